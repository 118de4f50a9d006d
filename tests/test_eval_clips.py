"""One clip type and one reader: eval, views and uploads read files through mmdiff.data.av_io.read_av into
AVClip; its stream selection, native rates and early stop."""
import numpy as np
import pytest

import mmdiff.data.av_io as av_io
from eval.clips import ClipError, read_clip
from mmdiff.data.av_io import AVClip, NoAudioError, read_av
from tests.eval_helpers import write_clip_folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    write_clip_folder(root / "av", 1, seed=3, frames=30)                 # 3 s at 10 fps, 8 kHz audio
    write_clip_folder(root / "mute", 1, seed=4, frames=12, audio=False)
    return {"av": root / "av" / "clip000.mp4", "mute": root / "mute" / "clip000.mp4"}


def test_eval_reads_the_first_frames_through_read_av(clips):
    clip = read_clip(clips["av"], 16)
    assert isinstance(clip, AVClip) and clip.name == "clip000.mp4"
    assert clip.video.shape == (16, 32, 32, 3) and clip.fps == 10 and clip.audio_rate == 8000
    full = read_av(clips["av"], 10, None, 8000)                             # training data's reader, all of it
    np.testing.assert_array_equal(clip.video, full.video[:16])
    np.testing.assert_array_equal(clip.audio, full.audio[:12800])          # the samples the 16 frames span
    with pytest.raises(ClipError, match="has 30 frames; 31 are needed"):
        read_clip(clips["av"], 31)


def test_streams_and_native_rates(clips):
    mute = read_av(clips["mute"], None, None, None, streams=("video",))
    assert mute.audio is None and mute.fps == 10 and mute.num_frames == 12 and mute.duration == pytest.approx(1.2)
    with pytest.raises(NoAudioError):
        read_av(clips["mute"], None, None, None)
    sound = read_av(clips["av"], None, None, None, streams=("audio",), duration=0.5)
    assert sound.video is None and sound.audio_rate == 8000 and sound.audio.shape == (4000,)
    assert read_clip(clips["mute"], 12, with_audio=True).audio is None    # the protocol names the missing stream


def test_a_window_stops_decoding_once_it_is_read(clips, monkeypatch):
    """read_av(duration=...) gives what the full decode gives, cut, and decodes fewer frames."""
    seen = []
    iterate = av_io.decode_frames

    def counting(*args):
        for frame in iterate(*args):
            seen.append(frame)
            yield frame

    monkeypatch.setattr(av_io, "decode_frames", counting)
    full = read_av(clips["av"], 10, 32, 8000)
    n_full = len(seen)
    seen.clear()
    part = read_av(clips["av"], 10, 32, 8000, duration=1.0)
    assert len(seen) < n_full / 2
    np.testing.assert_array_equal(part.video, full.video[:10])
    np.testing.assert_array_equal(part.audio, full.audio[:8000])


def test_audio_shorter_than_the_frames_is_zero_padded(tmp_path):
    """16 frames (1.6 s) with 1.3 s of sound: the 16 frames, and the audio zero-padded to 1.6 s (the released
    evaluator pads short audio too) instead of a clip refused for "15 frames"."""
    from fractions import Fraction

    from data_media import write_source

    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8)            # (F, H, W, 3)
    audio = (0.3 * np.sin(2 * np.pi * 440 * np.arange(10400) / 8000))[None].astype(np.float32)   # (1, 1.3 s)
    path = write_source(tmp_path / "short_audio.mp4", video, Fraction(10), audio, 8000)
    clip = read_clip(path, 16)
    assert clip.num_frames == 16 and clip.audio.shape == (12800,)
    assert np.abs(clip.audio[:10000]).max() > 0.2 and np.abs(clip.audio[11000:]).max() == 0
