"""Audio-visual alignment views: mel spectrogram, audio onset curve and a strip of video frames on one time axis.

Pure numpy/scipy (STFT) + matplotlib's Agg backend; no UI imports. The studio, the notebook and the
CLI all draw through `clip_figure` / `compare_figure` and save with `save_png` (atomic).

Layouts: video uint8 (F, H, W, 3); audio float32 (T,) mono in [-1, 1]; a view draws an
`mmdiff.data.av_io.AVClip` (either stream may be None: a silent video, an audio file; `name` is its title).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.signal import stft

from mmdiff.atomic import atomic_path
from mmdiff.data.av_io import AVClip


# ------------------------------------------------------------------------------------ audio features
def hz_to_mel(f):
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the HTK mel scale, peak 1."""
    fmax = rate / 2 if fmax is None else fmax
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def stft_params(rate: int) -> tuple[int, int]:
    """(n_fft, hop): a ~32 ms window and a 8 ms hop, so a 10-fps frame spans ~12 columns."""
    n_fft = int(2 ** round(np.log2(0.032 * rate)))
    return n_fft, max(1, n_fft // 4)


def mel_spectrogram(audio: np.ndarray, rate: int, n_mels: int = 64, top_db: float = 80.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-mel power spectrogram.

    Returns (mel_db (n_mels, N) in dB re. the maximum, clipped at -top_db; times (N,) in s, the
    centre of each window; mel centre frequencies (n_mels,) in Hz).
    """
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"audio must be a non-empty (T,) array, got shape {a.shape}")
    n_fft, hop = stft_params(rate)
    n_fft = min(n_fft, max(16, 2 ** int(np.log2(max(a.size, 16)))))
    hop = max(1, n_fft // 4)
    _, times, z = stft(a, fs=rate, window="hann", nperseg=n_fft, noverlap=n_fft - hop, boundary="even",
                       padded=True)
    power = np.abs(z) ** 2                                          # (n_fft // 2 + 1, N)
    mel = mel_filterbank(rate, n_fft, n_mels) @ power               # (n_mels, N)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db - db.max(), -top_db)
    centres = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(rate / 2), n_mels + 2))[1:-1]
    keep = times <= a.size / rate + 1e-9
    return db[:, keep].astype(np.float32), times[keep], centres


def onset_strength(mel_db: np.ndarray) -> np.ndarray:
    """Spectral flux: mean over mel bands of the positive dB increase from one column to the next.

    (n_mels, N) -> (N,), the first column 0, scaled to peak 1 (all zeros stay zeros).
    """
    flux = np.maximum(0.0, np.diff(mel_db, axis=1)).mean(axis=0)
    env = np.concatenate([[0.0], flux])
    peak = env.max()
    return (env / peak if peak > 0 else env).astype(np.float32)


# ------------------------------------------------------------------------------------ video strip
def frame_strip(video: np.ndarray, max_frames: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Frames side by side: ((H, k*W, 3) uint8 image, (k,) indices of the frames shown).

    With more than max_frames frames, k = max_frames evenly spaced frames are shown.
    """
    v = np.asarray(video)
    if v.ndim != 4 or v.shape[-1] != 3 or v.dtype != np.uint8 or len(v) == 0:
        raise ValueError(f"video must be non-empty uint8 (F, H, W, 3), got {v.dtype} {v.shape}")
    idx = np.unique(np.linspace(0, len(v) - 1, min(len(v), max_frames)).round().astype(int))
    return np.concatenate(list(v[idx]), axis=1), idx


# ------------------------------------------------------------------------------------ figures
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _draw_clip(axes, clip: AVClip, duration: float, max_frames: int) -> None:
    """Three rows on a shared time axis [0, duration]: frames, mel spectrogram, onset curve."""
    ax_v, ax_s, ax_o = axes
    label = f"{clip.name}: " if clip.name else ""
    if clip.video is not None and len(clip.video):
        strip, idx = frame_strip(clip.video, max_frames)
        # each shown frame covers the interval of frames it stands for: [t_i, t_i + span)
        span = len(clip.video) / clip.fps / len(idx)
        ax_v.imshow(strip, extent=(0, len(idx) * span, 0, 1), aspect="auto", interpolation="nearest")
        for k in range(1, len(idx)):
            ax_v.axvline(k * span, color="white", linewidth=0.5)
        ax_v.set_title(f"{label}video frames ({len(clip.video)} at {clip.fps:g} fps)", fontsize=9, loc="left")
    else:
        ax_v.text(0.5, 0.5, "no video stream", ha="center", va="center", transform=ax_v.transAxes)
        ax_v.set_title(f"{label}video", fontsize=9, loc="left")
    ax_v.set_yticks([])
    if clip.audio is not None and len(clip.audio):
        db, times, centres = mel_spectrogram(clip.audio, clip.audio_rate)
        hop = times[1] - times[0] if len(times) > 1 else len(clip.audio) / clip.audio_rate
        ax_s.imshow(db, origin="lower", aspect="auto", cmap="magma",
                    extent=(times[0] - hop / 2, times[-1] + hop / 2, 0, len(centres)))
        ticks = np.linspace(0, len(centres) - 1, 4).round().astype(int)
        ax_s.set_yticks(ticks + 0.5, [f"{centres[t] / 1000:.1f}k" for t in ticks], fontsize=7)
        ax_s.set_ylabel("mel (Hz)", fontsize=8)
        ax_s.set_title(f"mel spectrogram ({clip.audio_rate} Hz)", fontsize=9, loc="left")
        env = onset_strength(db)
        ax_o.plot(times, env, color="tab:orange", linewidth=1)
        ax_o.fill_between(times, env, color="tab:orange", alpha=0.3)
        ax_o.set_ylim(0, 1.05)
        ax_o.set_ylabel("onset", fontsize=8)
    else:
        for ax, name in ((ax_s, "mel spectrogram"), (ax_o, "onset")):
            ax.text(0.5, 0.5, "no audio track", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(name, fontsize=9, loc="left")
    if clip.video is not None and len(clip.video) and clip.fps > 0:   # frame boundaries for alignment
        for k in range(1, len(clip.video)):
            ax_o.axvline(k / clip.fps, color="grey", linewidth=0.3, alpha=0.5)
    for ax in axes:
        ax.set_xlim(0, duration)
        ax.tick_params(labelsize=7)
    ax_o.set_xlabel("time (s)", fontsize=8)


def clip_figure(clip: AVClip, max_frames: int = 16, width: float = 8.0):
    """One clip: frames, mel spectrogram and onset curve sharing the time axis. Returns a Figure."""
    return compare_figure([clip], max_frames=max_frames, width=width)


def compare_figure(clips: list[AVClip], max_frames: int = 16, width: float = 8.0):
    """Several clips stacked, all on the same time axis (the longest clip's duration)."""
    if not clips:
        raise ValueError("compare_figure needs at least one clip")
    plt = _plt()
    duration = max(c.duration for c in clips) or 1.0
    ratios = [1.0, 1.6, 0.7] * len(clips)
    fig, axes = plt.subplots(3 * len(clips), 1, figsize=(width, 3.6 * len(clips)), dpi=100, sharex=True,
                             gridspec_kw={"height_ratios": ratios})
    axes = np.atleast_1d(axes)
    for i, clip in enumerate(clips):
        _draw_clip(axes[3 * i:3 * i + 3], clip, duration, max_frames)
    fig.tight_layout()
    return fig


def save_png(fig, path: str | os.PathLike) -> Path:
    """Write a figure as PNG atomically (temp file in the same folder, then rename) and close it."""
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
    finally:
        _plt().close(fig)
    return Path(path)


def preview_grid(video: np.ndarray, frames: tuple[int, ...] = (0, 5, 10, 15), scale: int = 2) -> np.ndarray:
    """Live-preview image: rows = clips, columns = the chosen frames, upscaled by `scale` (nearest).

    video: uint8 (N, F, H, W, 3) -> (N*H*scale, len(frames)*W*scale, 3) uint8.
    """
    v = np.asarray(video)
    cols = [min(f, v.shape[1] - 1) for f in frames]
    rows = [np.concatenate([v[n, f] for f in cols], axis=1) for n in range(v.shape[0])]
    img = np.concatenate(rows, axis=0)
    return img.repeat(scale, axis=0).repeat(scale, axis=1)
