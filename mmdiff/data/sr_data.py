"""Training pairs for the super-resolution stage: random high-resolution frames from a prepared cache
and their degraded low-resolution versions (paper Table A.1, right column).

The low-resolution frame is the high one area-downsampled by the SR factor, then degraded as in
Table A.1: Gaussian noise with sigma ~ U[0, 20] (in 8-bit pixel units) with p = 0.5, then JPEG
compression with quality ~ U[20, 80] with p = 0.5; a horizontal flip (p = 0.5) applies to both frames.
Randomness comes from a generator seeded by (seed, epoch, index), as in `AVClipDataset`.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mmdiff.config import SRConfig
from mmdiff.data.cache import CacheConfigMismatch, CacheItem, load_index, open_video
from mmdiff.data.pixels import frames_to_model


@dataclass(frozen=True)
class Degradation:
    """Table A.1's low-resolution augmentation."""

    noise_p: float = 0.5
    noise_sigma: tuple[float, float] = (0.0, 20.0)
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (20, 80)
    flip_p: float = 0.5


NO_DEGRADATION = Degradation(noise_p=0.0, jpeg_p=0.0, flip_p=0.0)


def downsample(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (size, size, 3) by area averaging: the exact block mean, rounded, for
    whole factors; PIL's box filter otherwise."""
    h, w, c = frame.shape
    if h % size or w % size:
        return np.asarray(Image.fromarray(frame).resize((size, size), Image.BOX))
    blocks = frame.reshape(size, h // size, size, w // size, c).astype(np.float64)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)


def jpeg_roundtrip(frame: np.ndarray, quality: int) -> np.ndarray:
    """uint8 (h, w, 3) -> the same frame after JPEG encoding at `quality` and decoding."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def degrade(low: np.ndarray, rng: np.random.Generator, deg: Degradation) -> tuple[np.ndarray, dict]:
    """Apply Gaussian noise then JPEG, each with its probability. Returns (uint8 frame, what was done)."""
    applied: dict = {}
    if rng.random() < deg.noise_p:
        sigma = float(rng.uniform(*deg.noise_sigma))
        noisy = low.astype(np.float64) + rng.normal(0.0, sigma, size=low.shape)
        low = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        applied["noise_sigma"] = sigma
    if rng.random() < deg.jpeg_p:
        quality = int(rng.integers(deg.jpeg_quality[0], deg.jpeg_quality[1] + 1))
        low = jpeg_roundtrip(low, quality)
        applied["jpeg_quality"] = quality
    return low, applied


class SRFrameDataset(Dataset):
    """(high (3, H, W), low (3, h, w)) float32 in [-1, 1]: random frames of a cache at `high_size`.

    :param frames_per_item: random frames drawn per cached item per epoch (__len__ = items x this).
    """

    def __init__(self, cache_dir: str | os.PathLike, config: SRConfig, seed: int = 0, frames_per_item: int = 8,
                 degradation: Degradation = Degradation()):
        self.cache_dir, self.config, self.seed, self.degradation = str(cache_dir), config, int(seed), degradation
        index = load_index(cache_dir)
        if index.spec.video_size != (config.high_size, config.high_size):
            h, w = index.spec.video_size
            raise CacheConfigMismatch(
                f"{cache_dir} holds {h}x{w} frames but this SR model learns {config.high_size}x{config.high_size}; "
                f"prepare the cache with --size {config.high_size} (mmdiff.data.prepare or mmdiff.data.synthetic)")
        self.items: list[CacheItem] = [i for i in index.items if i.frames > 0]
        if not self.items or frames_per_item < 1:
            raise ValueError(f"{cache_dir}: no frames to train on (items {len(self.items)}, "
                             f"frames_per_item {frames_per_item})")
        self.frames_per_item, self.epoch = int(frames_per_item), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items) * self.frames_per_item

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """uint8 (high (H, W, 3), degraded low (h, w, 3), record of the random choices) of pair `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame index {index} out of range for {len(self)}")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        item = self.items[index // self.frames_per_item]
        frame_no = int(rng.integers(0, item.frames))
        high = np.asarray(open_video(self.cache_dir, item)[frame_no])
        flip = bool(rng.random() < self.degradation.flip_p)
        if flip:
            high = np.ascontiguousarray(high[:, ::-1])
        low, applied = degrade(downsample(high, self.config.low_size), rng, self.degradation)
        return high, low, {"item": item.id, "frame": frame_no, "flip": flip, **applied}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        high, low, _ = self.pair(index)
        return frames_to_model(high), frames_to_model(low)   # (3, H, W), (3, h, w)


__all__ = ["SRFrameDataset", "Degradation", "NO_DEGRADATION", "downsample", "jpeg_roundtrip", "degrade"]
