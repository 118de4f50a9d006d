"""Seeded random weights in the layout of the released AudioCLIP-Full-Training.pt, from numpy alone.

Each tensor is drawn from its own generator, np.random.default_rng([SEED, crc32(key)]), so a tensor's
values do not depend on which other keys are built (the test builds only the `audio.*` ones) nor on
the torch version. The values are chosen so that the network computes something non-trivial on
real audio (embeddings differ between inputs, no layer saturates):
- conv / linear weights ~ N(0, 1 / fan_in) (a ReLU network whose activations neither vanish nor
  explode much over the 16 bottlenecks), biases ~ N(0, 0.05^2);
- BatchNorm: weight ~ U(0.5, 1.5), bias ~ N(0, 0.1^2), running_mean ~ N(0, 0.1^2),
  running_var ~ U(0.5, 2.0) (positive), num_batches_tracked = 0;
- fbsp (the learned Fourier layer): fc = k + U(-0.5, 0.5), fb ~ U(0.5, 2.0), m ~ U(0.2, 2.0)
  (non-integer m, so sinc(.)^m takes its complex branch where sinc < 0); bias is the empty (0,) tensor;
- audio.window: the periodic Blackman-Harris window the model builds itself (float64 -> float32);
- the image/text (CLIP) tensors: N(0, 0.02^2) (they do not enter the audio embedding).
`layout.json` beside this file lists the 861 keys, shapes and dtypes of the released file as
upstream's own AudioCLIP() constructor gives them.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

SEED = 20260418
LAYOUT = Path(__file__).with_name("layout.json")


def layout() -> dict[str, tuple[list[int], str]]:
    """{key: (shape, dtype name)} of the full released state dict (861 keys)."""
    return {k: (shape, dtype) for k, (shape, dtype) in json.loads(LAYOUT.read_text()).items()}


def _window(n: int) -> np.ndarray:
    k = np.arange(n, dtype=np.float64) * (2 * np.pi / n)
    return (0.35875 - 0.48829 * np.cos(k) + 0.14128 * np.cos(2 * k) - 0.01168 * np.cos(3 * k)).astype(np.float32)


def tensor(key: str, shape: list[int], dtype: str = "float32") -> np.ndarray:
    """The recipe's value for one key: a numpy array of `shape`."""
    if dtype == "int64":                                    # BatchNorm num_batches_tracked
        return np.zeros(shape, np.int64)
    rng = np.random.default_rng([SEED, zlib.crc32(key.encode())])
    name = key.rsplit(".", 1)[-1]
    n = int(np.prod(shape)) if shape else 1
    if not key.startswith("audio."):
        v = 0.02 * rng.standard_normal(n)
    elif key == "audio.window":
        v = _window(shape[0])
    elif key == "audio.fbsp.fc":
        v = np.arange(n) + rng.uniform(-0.5, 0.5, n)
    elif key == "audio.fbsp.fb":
        v = rng.uniform(0.5, 2.0, n)
    elif key == "audio.fbsp.m":
        v = rng.uniform(0.2, 2.0, n)
    elif name == "running_var":
        v = rng.uniform(0.5, 2.0, n)
    elif name == "running_mean":
        v = 0.1 * rng.standard_normal(n)
    elif len(shape) > 1:                                    # conv / linear weight
        v = rng.standard_normal(n) / np.sqrt(np.prod(shape[1:]))
    elif name == "weight":                                  # 1-D weight: BatchNorm scale
        v = rng.uniform(0.5, 1.5, n)
    elif ".bn" in key or "downsample.1" in key:             # BatchNorm shift
        v = 0.1 * rng.standard_normal(n)
    else:                                                   # conv / linear bias
        v = 0.05 * rng.standard_normal(n)
    return np.asarray(v, np.float32).reshape(shape)


def state_dict(prefix: str = "", as_torch: bool = True) -> dict:
    """The recipe's tensors for every layout key starting with `prefix` ("" = all 861, "audio." = the audio branch)."""
    out = {k: tensor(k, shape, dtype) for k, (shape, dtype) in layout().items() if k.startswith(prefix)}
    if as_torch:
        import torch

        out = {k: torch.from_numpy(v) for k, v in out.items()}
    return out
