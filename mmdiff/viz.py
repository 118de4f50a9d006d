"""Audio-visual alignment views: mel spectrogram, audio onset curve and a strip of video frames on one time axis.

Audio through mmdiff.audio_features (librosa: the STFT and onsets of AV-Align) + matplotlib's Agg
backend; no UI imports. The studio, the notebook and the CLI all draw through `clip_figure` /
`compare_figure` and save with `save_png` (atomic).

Layouts: video uint8 (F, H, W, 3); audio float32 (T,) mono in [-1, 1]; a view draws an
`mmdiff.data.av_io.AVClip` (either stream may be None: a silent video, an audio file; `name` is its title).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmdiff.atomic import atomic_path
from mmdiff.audio_features import mel_db, onset_strength, onset_times, power_spectrum
from mmdiff.data.av_io import AVClip


# ------------------------------------------------------------------------------------ audio features
@dataclass(frozen=True)
class AudioView:
    """What the view draws of a waveform, all from AV-Align's one STFT (mmdiff.audio_features)."""
    mel_db: np.ndarray        # (n_mels, N) float32 dB re. the maximum, clipped at -top_db
    centres: np.ndarray       # (n_mels,) Hz, centre frequency of each mel band
    times: np.ndarray         # (N,) s, centre of each STFT frame
    onset_env: np.ndarray     # (N,) float32 librosa's onset strength scaled to peak 1 (silence stays 0)
    onsets: np.ndarray        # (K,) s, the onsets AV-Align matches against video peaks


def audio_view(audio: np.ndarray, rate: int, n_mels: int = 64, top_db: float = 80.0) -> AudioView:
    """Mel spectrogram, onset curve and onsets of a mono waveform (T,) at `rate` Hz.

    Computed at the metric's settings (22,050 Hz, 2048 / 512 STFT; mmdiff.audio_features says why), so
    the onsets drawn are the ones AV-Align counts.
    """
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"audio must be a non-empty (T,) array, got shape {a.shape}")
    spec = power_spectrum(a, rate)
    db, centres = mel_db(spec, n_mels, top_db)
    env = onset_strength(spec)
    peak = env.max()
    return AudioView(db, centres, spec.times, (env / peak if peak > 0 else env).astype(np.float32),
                     onset_times(env))


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
        view = audio_view(clip.audio, clip.audio_rate)
        times, centres = view.times, view.centres
        hop = times[1] - times[0] if len(times) > 1 else len(clip.audio) / clip.audio_rate
        ax_s.imshow(view.mel_db, origin="lower", aspect="auto", cmap="magma",
                    extent=(times[0] - hop / 2, times[-1] + hop / 2, 0, len(centres)))
        ticks = np.linspace(0, len(centres) - 1, 4).round().astype(int)
        ax_s.set_yticks(ticks + 0.5, [f"{centres[t] / 1000:.1f}k" for t in ticks], fontsize=7)
        ax_s.set_ylabel("mel (Hz)", fontsize=8)
        ax_s.set_title(f"mel spectrogram ({clip.audio_rate} Hz)", fontsize=9, loc="left")
        ax_o.plot(times, view.onset_env, color="tab:orange", linewidth=1)
        ax_o.fill_between(times, view.onset_env, color="tab:orange", alpha=0.3)
        for t in view.onsets:                                     # the onsets AV-Align counts
            ax_o.axvline(t, color="tab:red", linewidth=0.8)
        ax_o.set_ylim(0, 1.05)
        ax_o.set_ylabel("onset", fontsize=8)
        ax_o.set_title(f"onset strength, {len(view.onsets)} AV-Align onsets (red)", fontsize=9, loc="left")
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
