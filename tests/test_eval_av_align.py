"""AV-Align on constructed clips: motion bursts on clicks score high, shifted audio scores low."""
import numpy as np
import pytest

from eval.av_align import audio_peak_times, av_align, optical_flow, peak_iou, video_peak_times
from tests.eval_helpers import click_track


def make_clip(events, frames=16, size=32, fps=10, rate=8000, shift_s=0.0, noise=0.02, seed=0):
    """A bright square that jumps 3 px at each event frame; a decaying 1 kHz click at each event time."""
    rng = np.random.default_rng(seed)
    video = np.full((frames, size, size, 3), 40, np.uint8)       # (F, H, W, 3)
    x0, side, x = size // 8, size // 4, size // 8
    for f in range(frames):
        if f in events:
            x = x0 + 3 if x == x0 else x0
        video[f, size // 3: size // 3 + side, x: x + side] = 220
    return video, click_track(rng, events, frames, fps, rate, shift_s, noise)


@pytest.mark.parametrize("size,rate,fps,frames", [(32, 8000, 10, 16), (64, 16000, 25, 32)])
def test_aligned_clip_scores_high_shifted_low(size, rate, fps, frames):
    events = [4, 8, 12]
    v, a = make_clip(events, frames, size, fps, rate)
    np.testing.assert_allclose(audio_peak_times(a, rate), np.array(events) / fps, atol=0.5 / fps)
    np.testing.assert_allclose(video_peak_times(v, fps), np.array(events) / fps)
    assert av_align(v, a, fps, rate) == pytest.approx(1.0)
    v2, a2 = make_clip(events, frames, size, fps, rate, shift_s=1.5 / fps)
    assert av_align(v2, a2, fps, rate) == 0.0
    # A window of two frames forgives a 1.5-frame shift.
    assert av_align(v2, a2, fps, rate, window_frames=2) == pytest.approx(1.0)


def test_partial_alignment():
    # 3 motion bursts, clicks only at two of them plus one unrelated click: 2 / (3 + 3 - 2) = 0.5.
    v, _ = make_clip([4, 8, 12])
    _, a = make_clip([4, 8, 14 - 0])
    a_peaks = audio_peak_times(a, 8000)
    assert len(a_peaks) == 3
    assert av_align(v, a, 10, 8000) == pytest.approx(0.5)


def test_peak_iou_hand_cases():
    assert peak_iou(np.array([0.1, 0.5]), np.array([0.1, 0.5]), 0.05) == 1.0
    assert peak_iou(np.array([0.1]), np.array([0.3]), 0.1) == 0.0
    # one video peak can match only one audio peak: 1 / (2 + 1 - 1)
    assert peak_iou(np.array([0.1, 0.12]), np.array([0.11]), 0.05) == 0.5
    assert peak_iou(np.zeros(0), np.zeros(0), 0.1) == 0.0


def test_silence_and_still_video_score_zero():
    v, a = make_clip([])
    assert len(audio_peak_times(np.zeros(8000), 8000)) == 0
    assert len(video_peak_times(v, 10)) == 0
    assert av_align(v, np.zeros_like(a), 10, 8000) == 0.0


def test_flow_recovers_translation():
    rng = np.random.default_rng(0)
    from scipy import ndimage
    img = ndimage.gaussian_filter(rng.random((48, 48)), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    moved = np.roll(img, 1, axis=1)                                # content moves +1 px in x
    u, v = optical_flow(img, moved)
    inner = (slice(8, -8), slice(8, -8))
    assert np.median(u[inner]) == pytest.approx(1.0, abs=0.15)
    assert abs(np.median(v[inner])) < 0.15


def test_bad_shapes():
    with pytest.raises(ValueError, match="mono"):
        av_align(np.zeros((16, 8, 8, 3), np.uint8), np.zeros((2, 100)), 10, 8000)
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        av_align(np.zeros((16, 8, 8), np.uint8), np.zeros(100), 10, 8000)


def test_change_detector_separates_real_from_mismatched_synthetic_pairs():
    # On the project's synthetic data (bounces click, flashes beep), abrupt-change peaks line up with the
    # sidecar event times and with the audio onsets, and swapping the audio between clips breaks that.
    import numpy as np

    from eval.av_align import av_align, change_peak_times, peak_iou
    from mmdiff.data.synthetic import make_clip

    clips = [make_clip(i, 7, 16, 10, 32, 8000) for i in range(24)]
    sidecar = np.mean([peak_iou(np.array(c.record["events"]), change_peak_times(c.video, 10), 0.1) for c in clips])
    real = np.mean([av_align(c.video, c.audio, 10, 8000, video_events="change") for c in clips])
    mismatched = np.mean([av_align(c.video, clips[(i + 1) % 24].audio, 10, 8000, video_events="change")
                          for i, c in enumerate(clips)])
    assert sidecar > 0.55 and real > 0.55, (sidecar, real)
    assert real > mismatched + 0.25, (real, mismatched)
