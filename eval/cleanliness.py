"""Is a generated clip clean? Pixel noise and audio level against the real clips of the same domain.

Issue 20's check of the default model: a sample is *dirty* when its frames carry pixel noise or its audio
is white noise, judged against real clips (the synthetic generator's, `mmdiff.data.synthetic`):

- pixel high-frequency energy `pixel_hf`: the mean squared difference of horizontally and vertically
  adjacent pixels, values in [0, 1]. The synthetic scenes are smooth gradients with one object, so real
  clips sit near 0.002-0.01 at 32 px; pixel noise of std s adds about 2 s^2.
- audio RMS `audio_rms` over the whole clip, and the background level `floor_rms`: the RMS of the quietest
  quarter of 25-ms windows, i.e. the level *between* events (real clips: the generator's hiss, std 0.002).

`Criterion.from_real` sets each threshold to `factor` (2) times the largest value over real clips, except
the overall audio RMS, whose bound is absolute (0.25, issue 20's). A clip is clean when all three are below.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FLOOR_WINDOW_S = 0.025      # background level: RMS in windows of this length ...
FLOOR_QUANTILE = 0.25       # ... the quietest quarter of them
AUDIO_RMS_MAX = 0.25        # the overall audio RMS above which a clip is white noise (issue 20)


def pixel_hf(video: np.ndarray) -> np.ndarray:
    """(N, F, H, W, 3) uint8 or floats in [0, 1] -> (N,) mean squared adjacent-pixel difference."""
    v = video.astype(np.float64) / (255.0 if video.dtype == np.uint8 else 1.0)
    dx = np.diff(v, axis=3) ** 2                                     # (N, F, H, W-1, 3)
    dy = np.diff(v, axis=2) ** 2                                     # (N, F, H-1, W, 3)
    return 0.5 * (dx.mean(axis=(1, 2, 3, 4)) + dy.mean(axis=(1, 2, 3, 4)))


def window_rms(audio: np.ndarray, rate: int, window_s: float) -> np.ndarray:
    """(N, T) waveforms -> (N, n) float64 RMS of the n whole consecutive windows of `window_s` seconds."""
    a = audio.astype(np.float64)
    win = max(1, round(window_s * rate))
    n = a.shape[1] // win
    return np.sqrt((a[:, :n * win].reshape(a.shape[0], n, win) ** 2).mean(axis=2))


def audio_levels(audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, T) waveforms in [-1, 1] -> ((N,) overall RMS, (N,) RMS of the quietest windows)."""
    rms = np.sqrt((audio.astype(np.float64) ** 2).mean(axis=1))
    per_window = window_rms(audio, rate, FLOOR_WINDOW_S)                                    # (N, n)
    n = per_window.shape[1]
    quiet = np.sort(per_window, axis=1)[:, :max(1, int(n * FLOOR_QUANTILE))]
    return rms, np.sqrt((quiet ** 2).mean(axis=1))


@dataclass(frozen=True)
class Scores:
    """Per-clip values, each (N,)."""

    pixel_hf: np.ndarray
    audio_rms: np.ndarray
    floor_rms: np.ndarray


def score_clips(video: np.ndarray, audio: np.ndarray, rate: int) -> Scores:
    """video (N, F, H, W, 3) uint8 or [0, 1] floats, audio (N, T) in [-1, 1]."""
    rms, floor = audio_levels(audio, rate)
    return Scores(pixel_hf(video), rms, floor)


@dataclass(frozen=True)
class Criterion:
    """Thresholds of a clean clip (strictly below each)."""

    pixel_hf: float
    floor_rms: float
    audio_rms: float = AUDIO_RMS_MAX

    @classmethod
    def from_real(cls, real: Scores, factor: float = 2.0) -> "Criterion":
        return cls(pixel_hf=factor * float(real.pixel_hf.max()), floor_rms=factor * float(real.floor_rms.max()))

    def clean(self, s: Scores) -> np.ndarray:
        """(N,) bool: every value below its threshold."""
        return (s.pixel_hf < self.pixel_hf) & (s.floor_rms < self.floor_rms) & (s.audio_rms < self.audio_rms)

    def describe(self) -> dict:
        return asdict(self)


def from_generated(video, audio) -> tuple[np.ndarray, np.ndarray]:
    """`mmdiff.generate.generate`'s tensors (video (N, F, 3, H, W), audio (N, 1, T) in [-1, 1]) -> the arrays
    `score_clips` takes: uint8 frames (N, F, H, W, 3) as a written file holds them, and (N, T)."""
    from mmdiff.data.pixels import model_to_frames

    return model_to_frames(video), audio[:, 0].float().cpu().numpy()
