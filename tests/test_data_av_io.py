"""av_io: decode real containers made here, encode clips, round trips, and errors."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from scipy.signal import resample_poly

from data_media import pattern_frames, tone_signal, write_source
from mmdiff.data import av_io
from mmdiff.data.av_io import (AVDecodeError, EmptyMediaError, NoAudioError, NoVideoError, crop_box,
                               letterbox_box, read_av, read_wav, resize_frame, select_frames,
                               to_uint8_frames, write_clip, write_wav)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((x - ref) ** 2)))


def best_lag(x: np.ndarray, ref: np.ndarray, max_lag: int = 50) -> int:
    lags = range(-max_lag, max_lag + 1)
    n = min(len(x), len(ref)) - 2 * max_lag
    scores = [np.dot(x[max_lag + l:max_lag + l + n], ref[max_lag:max_lag + n]) for l in lags]
    return list(lags)[int(np.argmax(scores))]


# ---------------------------------------------------------------------------------------------
# pure pieces
def test_crop_and_letterbox_boxes_closed_form():
    assert crop_box((48, 64), (32, 32)) == (0, 8, 48, 48)
    assert crop_box((23, 37), (32, 32)) == (0, 7, 23, 23)
    assert crop_box((64, 48), (32, 32)) == (8, 0, 48, 48)
    assert crop_box((100, 100), (20, 40)) == (25, 0, 50, 100)
    assert letterbox_box((48, 64), (32, 32)) == (4, 0, 24, 32)
    assert letterbox_box((64, 16), (32, 32)) == (0, 12, 32, 8)


def test_resize_crop_keeps_the_centre_and_letterbox_adds_black_bars():
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :20] = (255, 0, 0)              # left quarter red
    img[:, 60:] = (0, 255, 0)              # right quarter green
    img[:, 20:60] = (0, 0, 255)            # centre half blue
    crop = resize_frame(img, 16, "crop")
    assert crop.shape == (16, 16, 3)
    np.testing.assert_array_equal(crop, np.broadcast_to(np.array([0, 0, 255], np.uint8), (16, 16, 3)))
    box = resize_frame(img, 16, "letterbox")                 # 80x40 -> 16x8 inside 16x16
    assert box.shape == (16, 16, 3)
    assert box[:4].max() == 0 and box[12:].max() == 0         # bars
    assert box[4:12, :3, 0].min() > 200 and box[4:12, 13:, 1].min() > 200
    assert box[4:12, 6:10, 2].min() > 200
    same = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_frame(same, 32, "crop"), same)
    with pytest.raises(ValueError, match="resize mode"):
        resize_frame(same, 16, "stretch")


def test_select_frames_by_time():
    t25 = np.arange(50) / 25
    np.testing.assert_array_equal(select_frames(t25, 10, end=2.0), [int(k * 2.5) for k in range(20)])
    t2997 = np.arange(60) * 1001 / 30000                     # 29.97 fps: frame 3 is at 0.1001 s
    np.testing.assert_array_equal(select_frames(t2997, 10, end=60 * 1001 / 30000),
                                  [k * 30000 // 10010 for k in range(20)])
    t5 = np.arange(8) / 5                                    # upsampling repeats frames
    np.testing.assert_array_equal(select_frames(t5, 10, end=1.6), np.repeat(np.arange(8), 2))
    assert len(select_frames(t25, 10, end=1.59)) == 15       # only whole output frames


def test_float_video_conversion():
    v = np.zeros((2, 3, 4, 5), np.float32)
    v[0] = -1.0
    v[1, 0] = 1.0
    u = to_uint8_frames(v)
    assert u.shape == (2, 4, 5, 3) and u.dtype == np.uint8
    assert (u[0] == 0).all() and (u[1, ..., 0] == 255).all() and (u[1, ..., 1] == 128).all()
    with pytest.raises(ValueError, match=r"\(F, 3, H, W\)"):
        to_uint8_frames(np.zeros((2, 4, 5, 3), np.float32))


# ---------------------------------------------------------------------------------------------
# decoding real containers
SOURCES = [  # name, video codec, pix_fmt, audio codec, fps, audio rate, channels, (h, w)
    ("h264_aac.mp4", "libx264", "yuv420p", "aac", Fraction(30000, 1001), 48000, 2, (48, 64)),
    ("mpeg4_pcm.mov", "mpeg4", "yuv420p", "pcm_s16le", Fraction(25), 44100, 2, (23, 37)),
    ("ffv1_flac.mkv", "ffv1", "yuv444p", "flac", Fraction(25), 44100, 1, (23, 37)),
    ("vp9_opus.webm", "libvpx-vp9", "yuv420p", "libopus", Fraction(30), 48000, 2, (23, 37)),
    ("mjpeg_pcm.avi", "mjpeg", "yuvj420p", "pcm_s16le", Fraction(25), 16000, 1, (48, 64)),
]


@pytest.mark.parametrize("name,vcodec,pix_fmt,acodec,fps,rate,channels,hw", SOURCES)
def test_decode_container_to_model_rate(tmp_path, name, vcodec, pix_fmt, acodec, fps, rate, channels, hw):
    seconds = 2
    frames = pattern_frames(round(seconds * fps), *hw)                  # (N, h, w, 3)
    audio = tone_signal(seconds * rate, rate, channels)                 # (C, T)
    options = {"crf": "10"} if vcodec == "libx264" else {}
    path = write_source(tmp_path / name, frames, fps, audio, rate, vcodec, pix_fmt, acodec, options=options)

    clip = read_av(path, fps=10, size=32, audio_rate=16000)
    assert clip.video.shape == (20, 32, 32, 3) and clip.video.dtype == np.uint8
    assert clip.audio.shape == (20 * 1600,) and clip.audio.dtype == np.float32   # exact length

    expected_idx = [k * fps.numerator // (10 * fps.denominator) for k in range(20)]
    resized = np.stack([resize_frame(f, 32, "crop") for f in frames])
    for k, i in enumerate(expected_idx):
        assert psnr(clip.video[k], resized[i]) > 28, (k, i)
        assert int(np.argmin([np.mean((clip.video[k].astype(float) - r) ** 2) for r in resized])) == i

    ref = resample_poly(audio.mean(axis=0), 16000, rate)[:clip.audio.size]     # mono = channel mean
    assert np.corrcoef(clip.audio, ref)[0, 1] > 0.99
    assert snr_db(ref, clip.audio) > 15
    assert best_lag(clip.audio, ref) == 0
    assert np.abs(clip.audio[:4700]).max() < 0.02 < np.abs(clip.audio[4800:5200]).max()  # 0.3 s lead


def test_letterbox_decode(tmp_path):
    frames = pattern_frames(10, 48, 64)
    path = write_source(tmp_path / "wide.mkv", frames, Fraction(10), tone_signal(8000, 8000, 1), 8000,
                        "ffv1", "yuv444p", "flac")
    clip = read_av(path, fps=10, size=32, audio_rate=8000, resize="letterbox")
    assert clip.video.shape == (10, 32, 32, 3)
    assert clip.video[:, :4].max() == 0 and clip.video[:, 28:].max() == 0
    assert psnr(clip.video[3], resize_frame(frames[3], 32, "letterbox")) > 40


def test_window_and_short_audio(tmp_path):
    frames = pattern_frames(40, 32, 32)                                  # 4 s at 10 fps
    audio = tone_signal(8000 * 2, 8000, 1, silence_s=0.0)               # only 2 s of audio
    path = write_source(tmp_path / "short_audio.mkv", frames, Fraction(10), audio, 8000,
                        "ffv1", "yuv444p", "flac")
    clip = read_av(path, 10, 32, 8000)
    assert clip.num_frames == 20 and clip.audio.size == 16000           # trimmed to the audio
    part = read_av(path, 10, 32, 8000, start=0.5, duration=1.0)
    assert part.num_frames == 10 and part.audio.size == 8000
    np.testing.assert_array_equal(part.video, clip.video[5:15])
    np.testing.assert_allclose(part.audio, clip.audio[4000:12000], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# writing
@pytest.mark.parametrize("fps,rate,samples,size", [(10, 8000, 12800, 32), (10, 16000, 25600, 64)])
def test_write_clip_round_trip(tmp_path, fps, rate, samples, size):
    frames = pattern_frames(16, size, size)
    audio = tone_signal(samples, rate, 1)[0] * 2.0
    mp4, wav = tmp_path / "clip.mp4", tmp_path / "clip.wav"
    write_clip(mp4, frames, audio, fps, rate, wav_path=wav)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip.wav"]   # no temp files

    data = mp4.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")                      # +faststart
    with av.open(str(mp4)) as c:
        vs, as_ = c.streams.video[0], c.streams.audio[0]
        assert (vs.codec_context.name, vs.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert as_.codec_context.name == "aac" and as_.codec_context.sample_rate == rate

    clip = read_av(mp4, fps, size, rate)
    assert clip.video.shape == (16, size, size, 3)
    assert clip.audio.shape == (samples,)                               # 1.6 s exactly
    assert clip.duration == pytest.approx(1.6)
    assert min(psnr(clip.video[k], frames[k]) for k in range(16)) > 29   # 4:2:0 alone caps it at 32 dB
    assert np.corrcoef(clip.audio, audio)[0, 1] > 0.99 and snr_db(audio, clip.audio) > 15
    assert best_lag(clip.audio, audio) == 0

    pcm, wav_rate = read_wav(wav)
    assert wav_rate == rate and pcm.shape == (samples,)
    assert np.abs(pcm - audio).max() <= 0.5 / 32767 + 1e-6


def test_truncated_or_foreign_wav_is_a_decode_error(tmp_path):
    wav = write_wav(tmp_path / "a.wav", np.zeros(800, np.float32), 8000)          # mono 16-bit: 1,600 bytes
    assert read_wav(wav)[0].shape == (800,)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav.read_bytes()[:-1001])                 # an odd number of bytes short
    with pytest.raises(AVDecodeError, match=r"cut.wav: truncated wav: its header promises 800 frames, the file "
                                            r"holds 299.5"):
        read_wav(cut)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFX" + bytes(40))
    with pytest.raises(AVDecodeError, match="junk.wav: not a readable wav"):
        read_wav(junk)


def test_write_clip_float_input_and_odd_size(tmp_path):
    frames = pattern_frames(16, 23, 37)
    as_float = frames.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0     # (F, 3, H, W)
    write_clip(tmp_path / "odd.mp4", as_float, np.zeros((1, 12800), np.float32), 10, 8000)
    clip = read_av(tmp_path / "odd.mp4", 10, None, 8000)
    assert clip.video.shape == (16, 24, 38, 3)                          # padded to even sides
    assert min(psnr(clip.video[k, :23, :37], frames[k]) for k in range(16)) > 30
    with pytest.raises(ValueError, match="empty"):
        write_clip(tmp_path / "e.mp4", frames[:0], np.zeros(10), 10, 8000)


# ---------------------------------------------------------------------------------------------
# errors name the file
def test_errors_are_specific(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AVDecodeError, match="junk.mp4"):
        read_av(junk, 10, 32, 8000)
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(AVDecodeError, match="zero.mp4"):
        read_av(tmp_path / "zero.mp4", 10, 32, 8000)
    with pytest.raises(AVDecodeError, match="no such file"):
        read_av(tmp_path / "missing.mp4", 10, 32, 8000)

    silent = write_source(tmp_path / "silent.mp4", pattern_frames(10, 32, 32), Fraction(10), None, 8000)
    with pytest.raises(NoAudioError, match="silent.mp4.*no audio"):
        read_av(silent, 10, 32, 8000)
    sound = write_source(tmp_path / "sound.mka", None, Fraction(10), tone_signal(8000, 8000, 1), 8000,
                         acodec="flac")
    with pytest.raises(NoVideoError, match="sound.mka.*no video"):
        read_av(sound, 10, 32, 8000)
    blip = write_source(tmp_path / "blip.mkv", pattern_frames(1, 32, 32), Fraction(30),
                        tone_signal(266, 8000, 1), 8000, "ffv1", "yuv444p", "flac")
    with pytest.raises(EmptyMediaError, match="blip.mkv.*no whole frame"):
        read_av(blip, 10, 32, 8000)                                     # 1/30 s < one 10-fps frame
    assert issubclass(NoAudioError, av_io.MediaError) and issubclass(av_io.MediaError, ValueError)


def test_list_videos_is_the_one_listing_of_clips(tmp_path):
    from eval.clips import ClipError, list_clips
    from eval.study import media

    for rel in ("b.MP4", "a.mkv", "notes.txt", ".hidden.mp4", "sub/c.mp4", ".cache/d.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "folder.mp4").mkdir()                                      # a folder with a video's name
    names = lambda paths: [p.relative_to(tmp_path).as_posix() for p in paths]   # noqa: E731
    assert names(av_io.list_videos(tmp_path)) == ["a.mkv", "b.MP4"]
    assert names(av_io.list_videos(tmp_path, recursive=True)) == ["a.mkv", "b.MP4", "sub/c.mp4"]
    assert list_clips(tmp_path) == media.list_clips(tmp_path) == av_io.list_videos(tmp_path)
    with pytest.raises(NotADirectoryError, match="missing does not exist"):
        av_io.list_videos(tmp_path / "missing")
    with pytest.raises(ClipError, match="clip folder .*missing does not exist"):
        list_clips(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipError, match="no video clips"):
        list_clips(tmp_path / "empty")


def test_every_reader_down_mixes_stereo_by_the_channel_mean(tmp_path):
    """Training data (read_av), evaluation (eval.clips) and uploads decode stereo alike: (L + R) / 2, not
    FFmpeg's mono layout ((L + R) / sqrt 2, 3 dB louder)."""
    from eval.clips import read_clip
    from mmdiff.uploads import read_audio_track

    rate, samples = 16000, 16000
    audio = tone_signal(samples, rate, channels=2)                    # (2, T): a different tone per channel
    path = write_source(tmp_path / "stereo.mkv", pattern_frames(10, 32, 32), Fraction(10), audio, rate,
                        acodec="pcm_s16le")
    mean = audio.mean(axis=0)
    decoded = {"read_av": read_av(path, 10, None, rate).audio, "eval": read_clip(path, 10).audio,
               "upload": read_audio_track(path, rate)}
    for name, got in decoded.items():
        n = min(got.size, mean.size)
        assert n >= samples - rate // 10, name
        np.testing.assert_allclose(got[:n], mean[:n], atol=2e-4, err_msg=name)    # 16-bit PCM: exact to 1 LSB


def test_eval_resizes_real_clips_exactly_as_the_training_data(tmp_path):
    from eval.clips import read_clip, resize_frames

    path = write_source(tmp_path / "wide.mp4", pattern_frames(10, 48, 80), Fraction(10),
                        tone_signal(8000, 8000, 1), 8000)
    train = read_av(path, 10, 32, 8000).video                        # (F, 32, 32, 3) as prepare makes it
    evaluated = resize_frames(read_clip(path, 10).video, 32)
    np.testing.assert_array_equal(evaluated, train)


def test_an_audio_rate_aac_cannot_store_is_refused_before_writing(tmp_path):
    """A converted model's odd rate (1,280 Hz) failed inside the encoder after sampling; now a clear ValueError
    naming the rates AAC takes, and no file."""
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"audio at 1280 Hz cannot be written to an mp4: AAC stores only 7350, "
                                         r"8000, .*96000 Hz"):
        write_clip(tmp_path / "odd.mp4", frames, np.zeros(512, np.float32), 10, 1280)
    assert list(tmp_path.iterdir()) == []
