"""Upload checks and single-stream decoding (mmdiff.uploads) on real files the tests write."""
from __future__ import annotations

import numpy as np
import pytest
from studio_fixtures import frames_ramp, make_media, write_video

from mmdiff.config import PRESETS
from mmdiff.uploads import (UploadError, UploadLimits, check_media, condition_audio, condition_video,
                            read_audio_track, read_for_view, read_video_frames)

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return make_media(tmp_path_factory.mktemp("uploads"))


LIMITS = UploadLimits(max_bytes=2 * 2**20, max_seconds=5.0)


@pytest.mark.parametrize("name, kw, message", [
    ("empty", {}, "empty.mp4: the file is empty"),
    ("not_media", {}, "notes.mp4: not a readable audio/video file"),
    ("huge", {}, "huge.mp4: 3.0 MB is over the 2 MB upload limit"),
    ("long_video", {}, "long.mp4: 7.0 s is longer than the 5 s limit"),
    ("silent_video", {"need_audio": True}, "silent.mp4: has no audio track"),
    ("wav_11k", {"need_video": True}, "tone11k.wav: has no video stream"),
    ("low_rate_wav", {}, "lowrate.wav: audio sample rate 2000 Hz is outside 4000-192000 Hz"),
])
def test_check_media_names_the_problem(media, name, kw, message):
    args = {"need_video": False, "need_audio": False, **kw}
    with pytest.raises(UploadError) as e:
        check_media(media[name], LIMITS, **args)
    assert str(e.value).startswith(message)


def test_missing_and_none(tmp_path):
    with pytest.raises(UploadError, match="no video given"):
        check_media(None, LIMITS, True, False, what="video")
    with pytest.raises(UploadError, match="gone.mp4: no such file"):
        check_media(tmp_path / "gone.mp4", LIMITS, True, False)


def test_oversized_frames(tmp_path):
    p = write_video(tmp_path / "wide.mp4", frames_ramp(3, 16, 64), 10)
    with pytest.raises(UploadError, match="64x16 video is larger than 32x32"):
        check_media(p, UploadLimits(max_side=32), True, False)


def test_frame_selection_at_a_new_rate(media):
    # av.mp4: 25 frames at 12.5 fps, frame k grey 10k; at 10 fps output j shows source floor(1.25 j)
    v = read_video_frames(media["av"], 10, None)
    assert v.shape == (20, 48, 64, 3)
    expect = np.array([10 * int(np.floor(1.25 * j + 1e-4)) for j in range(20)])
    assert np.abs(v.reshape(20, -1).mean(1) - expect).max() < 3
    assert read_video_frames(media["av"], 10, 32, max_seconds=1.0).shape == (10, 32, 32, 3)


def test_audio_resampled_keeps_its_pitch(media):
    a = read_audio_track(media["wav_11k"], 8000)
    assert a.dtype == np.float32 and abs(a.size - 16000) <= 2
    spec = np.abs(np.fft.rfft(a[:8000]))
    assert abs(np.argmax(spec) - 300) <= 1                             # 1-Hz bins over one second
    assert 0.45 < np.abs(a[1000:7000]).max() < 0.55
    assert read_audio_track(media["wav_11k"], 8000, max_seconds=0.5).size == 4000


def test_conditions_in_the_model_layout(media):
    v = condition_video(media["odd_size_video"], TINY, LIMITS)         # 46x30 source, odd sizes
    assert v.shape == (16, 32, 32, 3) and v.dtype == np.uint8
    a = condition_audio(media["av"], TINY, LIMITS)                     # audio from a video with sound
    assert a.shape == (12800,)
    with pytest.raises(UploadError, match="short.mp4: 0.50 s of video, the model needs 1.60 s"):
        condition_video(media["short_video"], TINY, LIMITS)
    notices = []
    a = condition_audio(media["short_wav"], TINY, LIMITS, notices=notices)   # 0.5 s: padded with silence
    assert a.shape == (12800,) and np.abs(a[:3800]).max() > 0.1 and not a[4100:].any()
    assert notices == ["short.wav: 0.50 s of audio, padded with 1.10 s of silence to the model's 1.60 s"]


def test_read_for_view_handles_one_stream(media):
    clip = read_for_view(media["silent_video"], LIMITS)
    assert clip.audio is None and clip.video.shape[1:] == (64, 64, 3) and clip.name == "silent.mp4"
    clip = read_for_view(media["wav_11k"], LIMITS, audio_rate=16000)
    assert clip.video is None and abs(clip.audio.size - 32000) <= 4 and clip.audio_rate == 16000


def test_sample_cli_condition_loader_reads_one_stream(media):
    import torch

    from mmdiff.sample import load_condition

    v = load_condition(str(media["silent_video"]), "video", TINY)      # a video without sound conditions audio
    frames = condition_video(media["silent_video"], TINY, LIMITS)
    assert v.shape == (1, 16, 3, 32, 32)
    assert torch.equal(v[0, 3, 0], torch.from_numpy(frames[3, :, :, 0]).float() / 127.5 - 1)
    a = load_condition(str(media["wav_11k"]), "audio", TINY)
    assert a.shape == (1, 1, 12800) and torch.equal(a[0, 0], torch.from_numpy(condition_audio(media["wav_11k"], TINY, LIMITS)))
