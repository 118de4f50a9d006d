"""CPU fast path of the coupled U-Net's forward (issue 21): the same arithmetic with fewer copies.

Each helper computes what the plain code computes, up to float32 rounding, and falls back to the plain
code when the fast path is off, so one process can time and test both (benchmarks/bench_speed.py,
tests/test_core_fastpath.py). What it changes, and what each step paid, is in BENCHMARKS.md:

- narrow video features (<= CHANNELS_LAST_MAX channels) stay channels-last (memory order B, F, H, W, C), so the
  2D+1D convolutions, the token views of the attention layers and RS-MMA are views, not copies, and
  oneDNN convolves without reordering;
- RS-MMA's window gathers use `index_select` (one memory copy) instead of advanced indexing;
- 1x1 convolutions of channels-last video features run as one matrix product over the (B*F*H*W, C) rows.

On by default; `MMDIFF_FAST=0` in the environment, or `with fastpath.use(False):`, selects the plain path.
"""
from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

_state = {"on": os.environ.get("MMDIFF_FAST", "1") != "0"}


def enabled() -> bool:
    """Whether the fast path is on."""
    return _state["on"]


@contextlib.contextmanager
def use(on: bool):
    """Run the enclosed forwards on the fast (True) or plain (False) path; restores the previous choice."""
    before = _state["on"]
    _state["on"] = bool(on)
    try:
        yield
    finally:
        _state["on"] = before


# Channels-last pays for narrow features (tiny: 16-64 channels, 1.2-1.3x per forward) and costs for wide
# ones (the paper's 128-512: ~10% slower, oneDNN reorders the weights on every call), measured in BENCHMARKS.md.
CHANNELS_LAST_MAX = 64


def channels_last(channels: int) -> bool:
    """Whether video features with `channels` channels are kept channels-last."""
    return enabled() and channels <= CHANNELS_LAST_MAX


def video_layout(x: torch.Tensor) -> torch.Tensor:
    """A video feature tensor (B, C, F, H, W) in the memory order the next layers read fastest:
    channels-last (B, F, H, W, C) on the fast path for narrow features, plain contiguous otherwise."""
    return x.contiguous(memory_format=torch.channels_last_3d if channels_last(x.shape[1]) else torch.contiguous_format)


def frame_windows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, F, L, C) gathered by an (F, S) frame index -> (B, F, S, L, C), i.e. x[:, idx]."""
    if not enabled():
        return x[:, idx]
    b, f, length, c = x.shape
    return x.index_select(1, idx.reshape(-1)).view(b, *idx.shape, length, c)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Multi-head attention of (N, Lq, C) queries over (N, Lk, C) keys and values -> (N, Lq, C)."""
    n, lq, c = q.shape
    heads = lambda x: x.view(n, x.shape[1], c // head_dim, head_dim).transpose(1, 2)  # noqa: E731
    out = nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v))  # (N, heads, Lq, d)
    return out.transpose(1, 2).reshape(n, lq, c)


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor,
                     head_dim: int) -> torch.Tensor:
    """RS-MMA's windowed attention: the queries of frame i attend to the keys of the frames idx[i].

    :param q: (B, F, Lq, C); :param k, v: (B, F, Lk, C); :param idx: (F, S) frame windows (distinct frames
    per row). :return: (B*F, Lq, C). When a window spans all F frames, every frame attends to every key
    and the order of keys does not matter to softmax attention, so the fast path attends once per clip
    instead of gathering F copies of the keys.
    """
    b, f, lq, c = q.shape
    lk, s = k.shape[2], idx.shape[1]
    if enabled() and s == f:
        out = _attention(q.reshape(b, f * lq, c), k.reshape(b, f * lk, c), v.reshape(b, f * lk, c), head_dim)
        return out.view(b * f, lq, c)
    windows = lambda x: frame_windows(x, idx).reshape(b * f, s * lk, c)  # noqa: E731  (B*F, S*Lk, C)
    return _attention(q.reshape(b * f, lq, c), windows(k), windows(v), head_dim)


def pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution `conv` of (B, C, H, W) -> (B, C', H, W). A channels-last input on the fast path
    runs as one matrix product over its (B*H*W, C) rows (oneDNN's channels-last 1x1 convolution is up
    to 10x slower on CPUs); anything else as the convolution."""
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)                                                       # (B, C, N), a view
    if not enabled() or flat.stride(1) != 1 or c == 1:
        return conv(x)
    weight = conv.weight.view(conv.out_channels, c)                                  # (C', C)
    out = nn.functional.linear(flat.transpose(1, 2), weight, conv.bias)             # (B, N, C')
    return out.transpose(1, 2).view(b, conv.out_channels, *x.shape[2:])


# Clips per forward on a CPU: batches above this run in chunks of it (larger ones were slower per clip:
# 0.90 vs 0.76 CPU s per clip at 16 vs 4 for tiny, BENCHMARKS.md; the features outgrow the caches).
CPU_CHUNK = 4


def chunked(denoise, device: torch.device, shift=None):
    """A `denoise(x, t)` that evaluates batches above CPU_CHUNK on a CPU chunk by chunk (fast path only).

    Every chunk starts from the same state of the RS-MMA shift generator `shift` (mmdiff.generate.shift_source;
    an int or None draws nothing), so every chunk gets the shifts the whole batch would, and the generator's
    state afterwards is the one a single forward leaves.
    """
    if not enabled() or torch.device(device).type != "cpu":
        return denoise
    gen = shift if isinstance(shift, torch.Generator) else None

    def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.shape[0] <= CPU_CHUNK:
            return denoise(x, t)
        state = gen.get_state() if gen is not None else None
        outs = []
        for xc, tc in zip(x.split(CPU_CHUNK), t.split(CPU_CHUNK)):
            if gen is not None:
                gen.set_state(state)
            outs.append(denoise(xc, tc))
        return torch.cat(outs)

    return run
