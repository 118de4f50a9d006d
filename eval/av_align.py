"""AV-Align (Yariv et al. 2023) as published: metric name `av-align`, no learned weights.

The published code is `av_align.py` of guyyariv/TempoTokens at commit bf0b1e3 (its first release
does not run). This module computes the same score from in-memory frames and audio, with the same
libraries and parameters; tests/test_eval_av_align.py checks it against scores that the published
script produced on real and synthetic clips (tests/data/av_align/). Per clip:
- audio peaks: the waveform as float32, resampled to 22,050 Hz with librosa's default resampler
  (`soxr_hq`, what `librosa.load` does to a file at another rate), `librosa.onset.onset_strength`,
  `librosa.onset.onset_detect` with librosa's defaults, as times in seconds (computed by
  `mmdiff.audio_features`, which owns these settings and whose STFT the spectrogram view draws too);
- video peaks: grey frames (OpenCV's BGR->grey weights), OpenCV's Farneback flow between consecutive
  frames (pyr_scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, poly_sigma 1.2, no flags), the
  mean flow magnitude per frame pair; frame i (1 <= i <= F-2) is a peak when its value is a strict local
  maximum and at least 0.1 (pixels per frame, an absolute threshold), at time i / fps;
- score: each audio peak in turn takes the first unused video peak strictly within one frame
  (|t_video - t_audio| < 1 / fps); IoU = matches / (|A| + |V| - matches).

Two deliberate differences, both where the published code has no defined result:
- Frame 0 has no predecessor, so the published code pads the trajectory with the flow of frames
  (0, 1) computed a second time. The two computations are meant to be equal (then frame 1, never a
  strict maximum of a trajectory that starts with a copy of it, is never a peak), but OpenCV's
  `cv2.magnitude` rounds a few pixels differently depending on the alignment of its output buffer, so
  the copy can come out a few ulps smaller and frame 1 then turns into a peak between runs. Here the
  value is computed once and copied (frame 1 is never a peak), and the magnitude is written into a
  64-byte-aligned buffer, so a clip always gets the same trajectory.
- No peak in either stream: the published code divides by zero; here the score is 0.

The project's own, different peak score is `change_peak_align` (metric `av-align-peaks`,
eval/change_peaks.py); docs/av_align.md compares the two.
"""
from __future__ import annotations

import numpy as np

from eval.change_peaks import change_peak_align  # noqa: F401  (the project's own score, re-exported)
from mmdiff.audio_features import onset_strength, onset_times, power_spectrum

FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)   # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags
MIN_FLOW = 0.1                     # absolute mean-flow threshold of a video peak (pixels per frame)


def audio_peak_times(audio: np.ndarray, audio_rate: int) -> np.ndarray:
    """Onset times (K,) in seconds of a mono waveform (T,) at `audio_rate` Hz, as the published code:
    librosa's onsets at 22,050 Hz (mmdiff.audio_features, the STFT the spectrogram view draws)."""
    return onset_times(onset_strength(power_spectrum(audio, audio_rate)))


def _aligned_empty(shape: tuple[int, ...], align: int = 64) -> np.ndarray:
    """Uninitialised float32 array of `shape` whose data starts on an `align`-byte boundary."""
    n = int(np.prod(shape))
    buf = np.empty(n + align // 4, np.float32)
    start = (-buf.ctypes.data % align) // 4
    return buf[start:start + n].reshape(shape)


def mean_flow(grey0: np.ndarray, grey1: np.ndarray) -> float:
    """Mean Farneback flow magnitude (pixels) from grey uint8 frame grey0 to grey1 (H, W)."""
    import cv2

    flow = cv2.calcOpticalFlowFarneback(grey0, grey1, None, *FARNEBACK)          # (H, W, 2) float32
    mag = cv2.magnitude(flow[..., 0], flow[..., 1], _aligned_empty(flow.shape[:2]))   # (H, W)
    return cv2.mean(mag)[0]


def flow_trajectory(video: np.ndarray) -> np.ndarray:
    """Mean flow magnitude (F,) per frame of RGB uint8 frames (F, H, W, 3): entry i >= 1 is the flow
    from frame i-1 to i; entry 0 is a copy of entry 1 (the published code's padding)."""
    import cv2

    v = np.asarray(video)
    if v.ndim != 4 or v.shape[-1] != 3 or v.dtype != np.uint8:
        raise ValueError(f"video must be uint8 (F, H, W, 3) RGB frames, got {v.dtype} {v.shape}")
    if v.shape[0] < 2:
        raise ValueError(f"video needs at least 2 frames for optical flow, got {v.shape[0]}")
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in v]   # F x (H, W) uint8
    mags = [mean_flow(grey[i - 1], grey[i]) for i in range(1, len(grey))]
    return np.array(mags[:1] + mags)


def video_peak_times(trajectory: np.ndarray, fps: float) -> list[float]:
    """Times (seconds) of the interior strict local maxima of a flow trajectory (F,) that reach MIN_FLOW."""
    t = [float(x) for x in trajectory]
    return [i / fps for i in range(1, len(t) - 1) if t[i - 1] < t[i] > t[i + 1] and t[i] >= MIN_FLOW]


def peak_iou(audio_peaks, video_peaks, fps: float) -> float:
    """Published matching: each audio peak takes the first unused video peak with
    |t_video - t_audio| < 1 / fps; matches / (|A| + |V| - matches), 0 when both are empty."""
    used = [False] * len(video_peaks)
    hits = 0
    for a in audio_peaks:
        for j, v in enumerate(video_peaks):
            if not used[j] and v - 1 / fps < a < v + 1 / fps:
                used[j] = True
                hits += 1
                break
    union = len(audio_peaks) + len(video_peaks) - hits
    return hits / union if union else 0.0


def av_align(video: np.ndarray, audio: np.ndarray, fps: float, audio_rate: int) -> float:
    """Published AV-Align in [0, 1] of one clip: video uint8 (F, H, W, 3) RGB frames at `fps`,
    mono audio (T,) float in [-1, 1] at `audio_rate` Hz."""
    if fps <= 0 or audio_rate <= 0:
        raise ValueError(f"fps and audio_rate must be positive, got fps={fps}, audio_rate={audio_rate}")
    video_peaks = video_peak_times(flow_trajectory(video), fps)
    audio_peaks = audio_peak_times(audio, audio_rate)
    return peak_iou([float(t) for t in audio_peaks], video_peaks, fps)
