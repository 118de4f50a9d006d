"""AV-Align: the published metric against scores the published script produced, and the project's own
peak score (change_peak_align) on constructed clips."""
import hashlib

import numpy as np
import pytest

from eval.av_align import av_align, flow_trajectory, peak_iou, video_peak_times
from eval.av_align import audio_peak_times as published_audio_peaks
from eval.change_peaks import audio_peak_times, change_peak_align, optical_flow
from eval.change_peaks import peak_iou as nearest_peak_iou
from eval.change_peaks import video_peak_times as lk_peak_times
from tests.av_align_reference import CLIPS, REFERENCE, read_as_published
from tests.eval_helpers import click_track


@pytest.fixture(scope="module")
def decoded():
    return {name: read_as_published(name) for name in CLIPS}


def test_reference_covers_real_and_synthetic_clips():
    assert REFERENCE["upstream"] == {"repo": "guyyariv/TempoTokens", "commit": "bf0b1e3", "file": "av_align.py"}
    names = set(CLIPS)
    assert {"megamind_a", "megamind_b", "vtest", "tree"} <= names and sum(n.startswith("synthetic") for n in names) >= 6
    scores = [c["score"] for c in CLIPS.values()]
    assert len(set(scores)) >= 8 and min(scores) == 0.0 and max(scores) > 0.5          # the clips differ
    # The script's own printed mean over the folder is the mean of the per-clip scores recorded.
    assert REFERENCE["cli_stdout"] == f"AV-Align:  {sum(scores) / len(scores)}"


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_equals_published_scores(name, decoded):
    ref = CLIPS[name]
    bgr, rgb, fps, audio, rate = decoded[name]
    assert hashlib.sha256(bgr.tobytes()).hexdigest() == ref["frames_sha256"], "decoder differs from the reference run"
    assert fps == ref["fps"]
    # Onsets: librosa at 22,050 Hz after soxr_hq resampling, bit-identical.
    assert published_audio_peaks(audio, rate).tolist() == ref["audio_peaks"]
    # Flow: OpenCV's Farneback; cv2.magnitude rounds a few pixels by the alignment of its output buffer,
    # so the published values themselves move by up to ~1e-10 between runs (make_reference.py).
    traj = flow_trajectory(rgb)
    np.testing.assert_allclose(traj, ref["flow_trajectory"], rtol=0, atol=1e-9)
    assert video_peak_times(traj, fps) == ref["video_peaks"]
    assert av_align(rgb, audio, fps, rate) == ref["score"]


def test_deterministic_and_frame_one_never_a_peak(decoded):
    _, rgb, fps, _, _ = decoded["vtest"]
    a, b = flow_trajectory(rgb), flow_trajectory(rgb.copy())
    assert a[0] == a[1] and np.array_equal(a, b)
    # frame 1 would be a strict maximum if entry 0 (frame 0's padding) came out a hair smaller.
    traj = np.array([0.5, 0.5, 0.2, 0.9, 0.3])
    assert video_peak_times(traj, 10.0) == [0.3]
    traj[0] = np.nextafter(0.5, 0)
    assert video_peak_times(traj, 10.0) == [0.1, 0.3]


def test_published_matching_and_threshold_by_hand():
    fps = 4.0                                                   # one frame = 0.25 s, exact in binary
    # strict window: a peak exactly one frame away does not match
    assert peak_iou([0.5], [0.75], fps) == 0.0
    assert peak_iou([0.625], [0.75], fps) == 1.0
    # ... in floating point, as the published code computes it: 0.3 - 0.1 < 0.2
    assert peak_iou([0.2], [0.3], 10.0) == 1.0
    # first unused video peak in order, not the nearest: audio 0.7 takes 0.5 (the first within reach)
    # although 0.75 is nearer, which leaves 0.75 for audio 0.95; nearest-peak matching finds one pair.
    assert peak_iou([0.7, 0.95], [0.5, 0.75], fps) == 1.0
    assert nearest_peak_iou(np.array([0.7, 0.95]), np.array([0.5, 0.75]), 1 / fps) == pytest.approx(1 / 3)
    assert peak_iou([0.05, 0.7, 2.0], [0.5, 0.75], fps) == pytest.approx(1 / 4)
    assert peak_iou([], [], fps) == 0.0                         # the published script divides by zero
    # absolute threshold 0.1: one huge flow (a scene cut) does not hide the others
    assert video_peak_times([0, 0.15, 0, 50.0, 0, 0.09, 0], 10.0) == [0.1, 0.3]


def test_published_bad_input():
    with pytest.raises(ValueError, match="mono"):
        av_align(np.zeros((4, 8, 8, 3), np.uint8), np.zeros((2, 100)), 10, 8000)
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        av_align(np.zeros((4, 8, 8), np.uint8), np.zeros(100), 10, 8000)
    with pytest.raises(ValueError, match="2 frames"):
        av_align(np.zeros((1, 8, 8, 3), np.uint8), np.zeros(100), 10, 8000)


# ------------------------------------------------------------------ the project's own score (av-align-peaks)


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
def test_peaks_aligned_clip_scores_high_shifted_low(size, rate, fps, frames):
    events = [4, 8, 12]
    v, a = make_clip(events, frames, size, fps, rate)
    np.testing.assert_allclose(audio_peak_times(a, rate), np.array(events) / fps, atol=0.5 / fps)
    np.testing.assert_allclose(lk_peak_times(v, fps), np.array(events) / fps)
    for detector in ("flow", "change"):
        assert change_peak_align(v, a, fps, rate, video_events=detector) == pytest.approx(1.0)
    v2, a2 = make_clip(events, frames, size, fps, rate, shift_s=1.5 / fps)
    assert change_peak_align(v2, a2, fps, rate, video_events="flow") == 0.0
    # A window of two frames forgives a 1.5-frame shift.
    assert change_peak_align(v2, a2, fps, rate, window_frames=2, video_events="flow") == pytest.approx(1.0)


def test_peaks_partial_alignment():
    # 3 motion bursts, clicks only at two of them plus one unrelated click: 2 / (3 + 3 - 2) = 0.5.
    v, _ = make_clip([4, 8, 12])
    _, a = make_clip([4, 8, 14 - 0])
    assert len(audio_peak_times(a, 8000)) == 3
    assert change_peak_align(v, a, 10, 8000, video_events="flow") == pytest.approx(0.5)


def test_nearest_peak_iou_hand_cases():
    assert nearest_peak_iou(np.array([0.1, 0.5]), np.array([0.1, 0.5]), 0.05) == 1.0
    assert nearest_peak_iou(np.array([0.1]), np.array([0.3]), 0.1) == 0.0
    # one video peak can match only one audio peak: 1 / (2 + 1 - 1)
    assert nearest_peak_iou(np.array([0.1, 0.12]), np.array([0.11]), 0.05) == 0.5
    assert nearest_peak_iou(np.zeros(0), np.zeros(0), 0.1) == 0.0


def test_peaks_silence_and_still_video_score_zero():
    v, a = make_clip([])
    assert len(audio_peak_times(np.zeros(8000), 8000)) == 0
    assert len(lk_peak_times(v, 10)) == 0
    assert change_peak_align(v, np.zeros_like(a), 10, 8000) == 0.0
    assert av_align(v, np.zeros_like(a), 10, 8000) == 0.0


def test_lk_flow_recovers_translation():
    rng = np.random.default_rng(0)
    from scipy import ndimage
    img = ndimage.gaussian_filter(rng.random((48, 48)), 2.0)
    img = (img - img.min()) / (img.max() - img.min())
    moved = np.roll(img, 1, axis=1)                                # content moves +1 px in x
    u, v = optical_flow(img, moved)
    inner = (slice(8, -8), slice(8, -8))
    assert np.median(u[inner]) == pytest.approx(1.0, abs=0.15)
    assert abs(np.median(v[inner])) < 0.15


def test_peaks_bad_shapes():
    with pytest.raises(ValueError, match="mono"):
        change_peak_align(np.zeros((16, 8, 8, 3), np.uint8), np.zeros((2, 100)), 10, 8000)
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        change_peak_align(np.zeros((16, 8, 8), np.uint8), np.zeros(100), 10, 8000)
    with pytest.raises(ValueError, match="video_events"):
        change_peak_align(np.zeros((16, 8, 8, 3), np.uint8), np.zeros(100), 10, 8000, video_events="x")


def test_change_detector_separates_real_from_mismatched_synthetic_pairs():
    # On the project's synthetic data (bounces click, flashes beep), abrupt-change peaks line up with the
    # sidecar event times and with the audio onsets, and swapping the audio between clips breaks that.
    from eval.change_peaks import change_peak_times
    from mmdiff.data.synthetic import make_clip as synthetic_clip

    clips = [synthetic_clip(i, 7, 16, 10, 32, 8000) for i in range(24)]
    sidecar = np.mean([nearest_peak_iou(np.array(c.record["events"]), change_peak_times(c.video, 10), 0.1)
                       for c in clips])
    real = np.mean([change_peak_align(c.video, c.audio, 10, 8000) for c in clips])
    mismatched = np.mean([change_peak_align(c.video, clips[(i + 1) % 24].audio, 10, 8000)
                          for i, c in enumerate(clips)])
    assert sidecar > 0.55 and real > 0.55, (sidecar, real)
    assert real > mismatched + 0.25, (real, mismatched)
