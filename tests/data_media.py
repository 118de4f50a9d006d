"""Helpers for the data tests: make small media files with PyAV (not with the code under test)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def pattern_frames(n: int, h: int, w: int) -> np.ndarray:
    """(n, h, w, 3) uint8 smooth frames whose phase tells frame i apart from its neighbours."""
    i = np.arange(n)[:, None, None]
    y = np.arange(h)[None, :, None] / h
    x = np.arange(w)[None, None, :] / w
    r = 128 + 100 * np.cos(2 * np.pi * (1.5 * x + 0.13 * i))
    g = 128 + 100 * np.cos(2 * np.pi * (y + 0.07 * i))
    shape = (n, h, w)
    b = 40.0 + (i * 37) % 170
    chans = [np.broadcast_to(c, shape) for c in (r, g, b)]
    return np.stack(chans, axis=-1).round().clip(0, 255).astype(np.uint8)


def tone_signal(samples: int, rate: int, channels: int, silence_s: float = 0.3) -> np.ndarray:
    """(channels, samples) float32: distinct tones and a chirp per channel after a silent lead."""
    t = np.arange(samples) / rate
    gate = (t >= silence_s).astype(float)
    chans = []
    for c in range(channels):
        f0 = 300.0 + 170.0 * c
        sig = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * (200 * t + 300 * t ** 2 / (1 + c)))
        chans.append(sig * gate * (0.8 + 0.2 * np.cos(2 * np.pi * 1.3 * t + c)))
    return np.array(chans, dtype=np.float32)


def write_source(path: Path, frames: np.ndarray | None, fps: Fraction, audio: np.ndarray | None,
                 rate: int, vcodec: str = "libx264", pix_fmt: str = "yuv420p",
                 acodec: str = "aac", fmt: str | None = None, options: dict | None = None) -> Path:
    """Encode uint8 (F, H, W, 3) frames and (C, T) float audio into any container PyAV can write."""
    with av.open(str(path), mode="w", format=fmt) as c:
        vs = as_ = None
        if frames is not None:
            vs = c.add_stream(vcodec, rate=fps)
            vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
            vs.options = options or {}
            vs.bit_rate = 8_000_000          # near-lossless for the codecs without a quality option
        if audio is not None:
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            as_ = c.add_stream(acodec, rate=rate)
            as_.layout = layout
        if vs is not None:
            for rgb in frames:
                c.mux(vs.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            c.mux(vs.encode(None))
        if as_ is not None:
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            fmt_a = as_.codec_context.format.name
            block = as_.codec_context.frame_size or 1024
            for s in range(0, audio.shape[1], block):
                chunk = audio[:, s:s + block]
                if fmt_a.endswith("p"):
                    arr = chunk.astype(np.float32)
                    fr = av.AudioFrame.from_ndarray(arr, format="fltp", layout=layout)
                else:
                    arr = np.ascontiguousarray(chunk.T.reshape(1, -1)).astype(np.float32)
                    fr = av.AudioFrame.from_ndarray(arr, format="flt", layout=layout)
                fr.sample_rate, fr.pts = rate, s
                c.mux(as_.encode(fr))
            c.mux(as_.encode(None))
    return path
