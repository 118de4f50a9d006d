"""Tiny synthetic clips for the user-study tests (8 frames 32x32, 0.8 s audio), written with PyAV."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CONTAINER_CODECS = {  # suffix -> (video codec, audio codec)
    ".mp4": ("libx264", "aac"),
    ".avi": ("mpeg4", "pcm_s16le"),
    ".mkv": ("mpeg4", "aac"),
}


def write_clip(path: Path, seed: int = 0, audio: bool = True, frames: int = 8, size: int = 32,
               fps: int = 10, seconds: float = 0.8, rate: int = 16000) -> Path:
    """Write a clip: video (frames, size, size, 3) uint8 of a moving gradient, audio a sine tone."""
    vcodec, acodec = CONTAINER_CODECS[path.suffix]
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as c:
        v = c.add_stream(vcodec, rate=fps)
        v.width = v.height = size
        v.pix_fmt = "yuv420p"
        a = None
        if audio:
            a = c.add_stream(acodec, rate=rate)
            a.layout = "mono"
        base = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
        for i in range(frames):
            img = np.roll(base, i, axis=1)  # (H, W, 3)
            for pkt in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in v.encode():
            c.mux(pkt)
        if a is not None:
            t = np.arange(int(seconds * rate)) / rate
            wave = (0.3 * np.sin(2 * np.pi * (220 + 50 * seed) * t) * 32767).astype(np.int16)
            frame_size = 1024
            for start in range(0, wave.size, frame_size):
                chunk = wave[start:start + frame_size][None, :]  # (1, n) packed s16 mono
                fr = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
                fr.sample_rate = rate
                fr.pts = start
                fr.time_base = Fraction(1, rate)
                for pkt in a.encode(fr):
                    c.mux(pkt)
            for pkt in a.encode():
                c.mux(pkt)
    return path


def make_clips_dir(root: Path, name: str, n: int, suffix: str = ".mp4", seed0: int = 0) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_clip(d / f"clip{i:03d}{suffix}", seed=seed0 + i)
    return d
