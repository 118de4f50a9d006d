"""The project's own audio-video alignment score (metric name `av-align-peaks`): NOT the published AV-Align.

The published AV-Align (Yariv et al. 2023) is `eval.av_align.av_align` (metric `av-align`). This module
is an earlier, independent peak-IoU score written here with numpy/scipy (and librosa.stft), sized to work
from 16-frame 32x32 clips at 8 kHz up to full-size clips. Its detectors and its matching differ from the published code,
so its values are not comparable with published AV-Align numbers (docs/av_align.md compares the two):
- onsets: spectral flux of the log-magnitude STFT (librosa.stft, 32 ms window, 10 ms hop), peaks picked like
  librosa's `onset_detect` (local max, above the local mean + delta, minimum spacing);
- video, `video_events="change"` (the default): abrupt-change peaks, local maxima of the mean second
  temporal difference of the grey frames (impacts and flashes, which optical flow misses at 10 fps);
- video, `video_events="flow"`: dense pyramidal Lucas-Kanade flow between consecutive grey frames;
  frame i carries the mean flow magnitude from frame i-1 to i, and its peaks are strict local maxima
  above max(min_flow, rel_flow * max) (a relative threshold: one large motion hides the others). This
  was what `eval.run --metric av-align` computed before issue 18;
- matching: each audio peak takes the nearest unused video peak within +-window_frames / fps
  (inclusive); IoU = matches / (|A| + |V| - matches); no peak in either stream scores 0.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

# ------------------------------------------------------------------------------------ audio


def onset_envelope(audio: np.ndarray, rate: int, hop_s: float = 0.010, win_s: float = 0.032
                   ) -> tuple[np.ndarray, float]:
    """Spectral-flux onset strength (K,) and its frame rate in Hz; frame k is centred at k*hop.

    Its own STFT settings (a symmetric Hann window of ~32 ms at the clip's rate, reflect padding), not
    AV-Align's (mmdiff.audio_features): this score's values were defined with them.
    """
    import librosa

    hop = max(1, int(round(hop_s * rate)))
    nfft = max(16, int(2 ** np.ceil(np.log2(win_s * rate))))
    x = np.asarray(audio, np.float64)
    if x.shape[0] < nfft:
        x = np.pad(x, (0, nfft - x.shape[0]))
    # centred frames, reflect padding: no fake onset at the clip start
    spec = np.abs(librosa.stft(x, n_fft=nfft, hop_length=hop, window=np.hanning(nfft), center=True,
                               pad_mode="reflect")).T                     # (K, nfft/2+1)
    logspec = np.log1p(10.0 * spec / (spec.max() + 1e-12))   # ~30 dB range: quiet noise barely counts
    flux = np.maximum(np.diff(logspec, axis=0), 0.0).sum(axis=1)         # (K-1,)
    flux = np.concatenate([flux[:1], flux])   # frame 0 has no predecessor: repeat frame 1   # (K,)
    return flux, rate / hop


def pick_peaks(env: np.ndarray, pre_max: int, post_max: int, pre_avg: int, post_avg: int,
               delta: float, wait: int) -> np.ndarray:
    """Indices of peaks of env: max over [i-pre_max, i+post_max], >= local mean + delta, >= wait apart."""
    n = env.shape[0]
    peaks: list[int] = []
    for i in range(n):
        lo, hi = max(0, i - pre_max), min(n, i + post_max + 1)
        if env[i] <= 0 or env[i] < env[lo:hi].max():
            continue
        alo, ahi = max(0, i - pre_avg), min(n, i + post_avg + 1)
        if env[i] < env[alo:ahi].mean() + delta:
            continue
        if peaks and i - peaks[-1] <= wait:
            continue
        peaks.append(i)
    return np.asarray(peaks, dtype=np.int64)


def audio_peak_times(audio: np.ndarray, rate: int, delta: float = 0.07) -> np.ndarray:
    """Onset times in seconds of a mono waveform (T,)."""
    audio = np.asarray(audio, np.float64)
    if audio.ndim != 1:
        raise ValueError(f"audio must be a mono waveform (T,), got shape {audio.shape}")
    if not np.any(audio):
        return np.zeros(0)
    env, env_rate = onset_envelope(audio, rate)
    env = env / (env.max() + 1e-12)                       # delta is relative to the strongest onset
    ms = lambda s: max(1, int(round(s * env_rate)))       # noqa: E731  seconds -> envelope frames
    idx = pick_peaks(env, pre_max=ms(0.03), post_max=ms(0.03), pre_avg=ms(0.10), post_avg=ms(0.10),
                     delta=delta, wait=ms(0.03))
    return idx / env_rate


# ------------------------------------------------------------------------------------ video


def _grey(video: np.ndarray) -> np.ndarray:
    """uint8 (F, H, W, 3) -> float64 (F, H, W) luminance in [0, 1]."""
    v = np.asarray(video)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise ValueError(f"video must be (F, H, W, 3) RGB frames, got shape {v.shape}")
    return (v.astype(np.float64) @ np.array([0.299, 0.587, 0.114])) / 255.0


def _lk_step(a: np.ndarray, b: np.ndarray, u: np.ndarray, v: np.ndarray, sigma: float,
             min_eig: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """One Lucas-Kanade refinement of flow (u, v) from a to b: warp b back, solve 2x2 per pixel."""
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    bw = ndimage.map_coordinates(b, [yy + v, xx + u], order=1, mode="nearest")
    iy, ix = np.gradient((a + bw) / 2)
    it = bw - a
    sxx = ndimage.gaussian_filter(ix * ix, sigma)
    syy = ndimage.gaussian_filter(iy * iy, sigma)
    sxy = ndimage.gaussian_filter(ix * iy, sigma)
    sxt = ndimage.gaussian_filter(ix * it, sigma)
    syt = ndimage.gaussian_filter(iy * it, sigma)
    det = sxx * syy - sxy ** 2
    # Trust only well-textured pixels (smaller eigenvalue of the structure tensor above a floor);
    # flat regions and straight edges (aperture problem) get no update instead of a blown-up one.
    lam_min = (sxx + syy) / 2 - np.sqrt(((sxx - syy) / 2) ** 2 + sxy ** 2)
    ok = lam_min > min_eig
    safe = np.where(ok, det, 1.0)
    # The linearisation holds for about a pixel per level: clip each update there.
    du = np.clip(np.where(ok, (-syy * sxt + sxy * syt) / safe, 0.0), -1.0, 1.0)
    dv = np.clip(np.where(ok, (sxy * sxt - sxx * syt) / safe, 0.0), -1.0, 1.0)
    return u + du, v + dv


def optical_flow(a: np.ndarray, b: np.ndarray, levels: int | None = None, iters: int = 3,
                 sigma: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Dense flow (u, v) in pixels from grey frame a to b (H, W): pyramidal Lucas-Kanade."""
    if levels is None:                                     # down to about 8 pixels on the short side
        levels = max(1, int(np.log2(min(a.shape) / 8)) + 1)
    pyr = [(a, b)]
    for _ in range(levels - 1):
        pa, pb = pyr[-1]
        pyr.append((ndimage.zoom(ndimage.gaussian_filter(pa, 1.0), 0.5, order=1),
                    ndimage.zoom(ndimage.gaussian_filter(pb, 1.0), 0.5, order=1)))
    u = v = None
    for pa, pb in reversed(pyr):
        if u is None:
            u, v = np.zeros_like(pa), np.zeros_like(pa)
        else:                                              # upsample the coarser flow, double it
            zoom = (pa.shape[0] / u.shape[0], pa.shape[1] / u.shape[1])
            u = 2 * ndimage.zoom(u, zoom, order=1)
            v = 2 * ndimage.zoom(v, zoom, order=1)
        for _ in range(iters):
            u, v = _lk_step(pa, pb, u, v, sigma)
    return u, v


def flow_magnitudes(video: np.ndarray) -> np.ndarray:
    """Mean optical-flow magnitude (F,) per frame; entry i is the motion from frame i-1 to i (0 for i=0)."""
    g = _grey(video)
    mags = np.zeros(g.shape[0])
    for i in range(1, g.shape[0]):
        u, v = optical_flow(g[i - 1], g[i])
        mags[i] = np.hypot(u, v).mean()
    return mags


def envelope_peak_times(env: np.ndarray, fps: float, floor: float, rel: float, plateau: bool = False) -> np.ndarray:
    """Times in seconds of interior local maxima of a per-frame envelope (F,) that reach
    max(floor, rel * env.max()); strict on both sides unless `plateau` admits a flat rise."""
    if env.shape[0] < 3:
        return np.zeros(0)
    thresh = max(floor, rel * env.max())
    rise = env[1:-1] >= env[:-2] if plateau else env[1:-1] > env[:-2]
    inner = rise & (env[1:-1] > env[2:]) & (env[1:-1] >= thresh)
    return (np.nonzero(inner)[0] + 1) / fps


def video_peak_times(video: np.ndarray, fps: float, min_flow: float = 0.01, rel_flow: float = 0.1) -> np.ndarray:
    """Times in seconds of motion peaks: strict local maxima of flow magnitude above the thresholds."""
    return envelope_peak_times(flow_magnitudes(video), fps, min_flow, rel_flow)


def change_energy(video: np.ndarray) -> np.ndarray:
    """Mean |f[i+1] - 2 f[i] + f[i-1]| (F,) of grey frames in [0, 255]: high where the picture changes
    abruptly (an impact reverses a motion, a flash lights up), low under smooth motion; 0 at both ends."""
    g = _grey(video) * 255.0                                             # (F, H, W)
    e = np.zeros(g.shape[0])
    if g.shape[0] >= 3:
        e[1:-1] = np.abs(g[2:] - 2 * g[1:-1] + g[:-2]).mean(axis=(1, 2))
    return e


def change_peak_times(video: np.ndarray, fps: float, min_change: float = 0.5, rel_change: float = 0.5) -> np.ndarray:
    """Times in seconds of abrupt-change peaks: local maxima of change_energy above the thresholds."""
    return envelope_peak_times(change_energy(video), fps, min_change, rel_change, plateau=True)


VIDEO_DETECTORS = {"flow": video_peak_times, "change": change_peak_times}


# ------------------------------------------------------------------------------------ score


def peak_iou(audio_times: np.ndarray, video_times: np.ndarray, tolerance: float) -> float:
    """IoU of two peak sets: greedy one-to-one matches within +-tolerance seconds / (|A| + |V| - matches)."""
    used = np.zeros(len(video_times), bool)
    hits = 0
    for t in audio_times:
        d = np.abs(np.asarray(video_times) - t)
        d[used] = np.inf
        if d.size and d.min() <= tolerance + 1e-9:
            used[int(d.argmin())] = True
            hits += 1
    union = len(audio_times) + len(video_times) - hits
    return hits / union if union else 0.0


def change_peak_align(video: np.ndarray, audio: np.ndarray, fps: float, audio_rate: int, window_frames: int = 1,
                      video_events: str = "change") -> float:
    """The project's peak-IoU score in [0, 1] of one clip (metric `av-align-peaks`, not the published
    AV-Align): video uint8 (F, H, W, 3) RGB, mono audio float (T,) in [-1, 1] at `audio_rate` Hz.

    `video_events="change"` detects abrupt visual changes (second temporal difference of the frames:
    impacts and flashes); `"flow"` takes Lucas-Kanade flow-magnitude peaks with a relative threshold
    (the pre-issue-18 `av-align` of eval.run). A clip with no peaks in either stream scores 0.
    """
    if video_events not in VIDEO_DETECTORS:
        raise ValueError(f"video_events must be one of {sorted(VIDEO_DETECTORS)}, got {video_events!r}")
    if fps <= 0 or audio_rate <= 0:
        raise ValueError(f"fps and audio_rate must be positive, got fps={fps}, audio_rate={audio_rate}")
    if window_frames < 0:
        raise ValueError(f"window_frames must be >= 0, got {window_frames}")
    a = audio_peak_times(audio, audio_rate)
    v = VIDEO_DETECTORS[video_events](video, fps)
    return peak_iou(a, v, window_frames / fps)
