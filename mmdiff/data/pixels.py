"""The one conversion between uint8 frames and the model's video layout.

Frames as files, the UI and the metrics see them: uint8 (..., H, W, 3).
Frames as the model sees them: float32 (..., 3, H, W) in [-1, 1] (0 -> -1, 255 -> 1).
"""
from __future__ import annotations

import numpy as np
import torch


def frames_to_model(frames) -> torch.Tensor:
    """uint8 (..., H, W, 3) (numpy or torch) -> float32 (..., 3, H, W) in [-1, 1]."""
    if isinstance(frames, np.ndarray):
        frames = np.require(frames, requirements=["C", "W"])    # copies read-only memmaps and flipped views only
    t = torch.as_tensor(frames)
    if t.dtype != torch.uint8 or t.dim() < 3 or t.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (..., H, W, 3), got {t.dtype} {tuple(t.shape)}")
    return t.float().div(127.5).sub(1).movedim(-1, -3)


def model_to_frames(video) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] (numpy or torch) -> uint8 (..., H, W, 3), clamped and rounded."""
    t = torch.as_tensor(video)
    if not t.is_floating_point() or t.dim() < 3 or t.shape[-3] != 3:
        raise ValueError(f"video must be float (..., 3, H, W) in [-1, 1], got {t.dtype} {tuple(t.shape)}")
    return ((t.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).cpu().numpy()


def nearest_upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (..., H, W, 3) -> (..., H * factor, W * factor, 3): every pixel a factor x factor block, no blur
    (a 32-px clip made big enough to see without a player's smoothing)."""
    return np.asarray(frames).repeat(factor, axis=-3).repeat(factor, axis=-2)


def view_factor(size: int, view_px: int) -> int:
    """The integer upscale that brings a `size`-px frame closest to `view_px` without passing it (at least 1)."""
    return max(1, int(view_px) // max(1, int(size)))
