"""CPU fast path of the coupled U-Net's forward (issue 21): the same arithmetic with fewer copies.

Each helper computes what the plain code computes, up to float32 rounding, and falls back to the plain
code when the fast path is off, so one process can time and test both (benchmarks/bench_speed.py,
tests/test_core_fastpath.py). What it changes, and what each step paid, is in BENCHMARKS.md:

- narrow video features (<= CHANNELS_LAST_MAX channels) stay channels-last (memory order B, F, H, W, C), so the
  2D+1D convolutions, the token views of the attention layers and RS-MMA are views, not copies, and
  oneDNN convolves without reordering;
- RS-MMA's window gathers use `index_select` (one memory copy) instead of advanced indexing;
- 1x1 convolutions of channels-last video features run as one matrix product over the (B*F*H*W, C) rows;
- CPU batches run in chunks, and with torch set to N >= 2 threads the chunks run on N worker threads of one
  torch thread each, instead of one chunk at a time on N threads (`chunked`).

On by default; `MMDIFF_FAST=0` in the environment, or `with fastpath.use(False):`, selects the plain path;
`with fastpath.use_parallel(False):` keeps the fast path but runs the chunks one at a time.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

_state = {"on": os.environ.get("MMDIFF_FAST", "1") != "0", "parallel": True}


def enabled() -> bool:
    """Whether the fast path is on."""
    return _state["on"]


@contextlib.contextmanager
def _switch(key: str, on: bool):
    before = _state[key]
    _state[key] = bool(on)
    try:
        yield
    finally:
        _state[key] = before


def use(on: bool):
    """Run the enclosed forwards on the fast (True) or plain (False) path; restores the previous choice."""
    return _switch("on", on)


def use_parallel(on: bool):
    """Run CPU chunks on worker threads (True, the default) or one at a time (False); restores the choice."""
    return _switch("parallel", on)


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

# Worker threads: torch's intra-op threads are set to 1 while chunks run in parallel, and restored when the last
# parallel section of the process ends (two sampling jobs of the studio may overlap).
_threads = {"depth": 0, "before": 1}
_threads_lock = threading.Lock()


def cpu_workers() -> int:
    """How many chunks may run at once: torch's thread setting outside a parallel section (inside one: the setting
    it replaced, so an overlapping job sees the user's choice, not the temporary 1)."""
    with _threads_lock:
        return _threads["before"] if _threads["depth"] else torch.get_num_threads()


@contextlib.contextmanager
def _one_torch_thread():
    """torch ops use one thread each inside (the workers supply the parallelism); reference-counted across threads."""
    with _threads_lock:
        if _threads["depth"] == 0:
            _threads["before"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads["depth"] += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads["depth"] -= 1
            if _threads["depth"] == 0:
                torch.set_num_threads(_threads["before"])


def _workers_for(shift) -> int:
    """Worker threads a parallel section may use: cpu_workers() when parallel chunks are on and the RS-MMA shift
    draws nothing (an int; a generator or torch's global RNG cannot be shared by threads), else 1."""
    return cpu_workers() if _state["parallel"] and isinstance(shift, int) else 1


def chunk_size(batch: int, workers: int) -> int:
    """Clips per chunk: at most CPU_CHUNK, and small enough that every worker gets one when it can."""
    return max(1, min(CPU_CHUNK, math.ceil(batch / max(1, workers))))


def _in_parallel(denoise, chunks: list, workers: int) -> list:
    """denoise(x, t) of every (x, t) chunk on `workers` threads of one torch thread each, outputs in order."""
    grad = torch.is_grad_enabled()
    inference = torch.is_inference_mode_enabled()

    def one(chunk):
        # grad mode and inference mode are thread-local: carry the caller's into the worker
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return denoise(*chunk)

    with _one_torch_thread(), ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, chunks))


def pair_runner(device: torch.device, shift=None):
    """A `both(f, g) -> (f(), g())` for two independent model calls of one step (classifier-free guidance's
    conditional and unconditional forwards), or None to call them one after the other. Where batch chunks would
    run in parallel (fast path, CPU, a shift that draws nothing, torch set to >= 2 threads), the two calls run on
    two worker threads of one torch thread each; inside a parallel section (batch chunks already on workers)
    they run in turn on the calling worker, so the cores are never oversubscribed."""
    if not enabled() or torch.device(device).type != "cpu" or not isinstance(shift, int):
        return None

    def both(f, g):
        with _threads_lock:
            nested = _threads["depth"] > 0
        if nested or _workers_for(shift) < 2:
            return f(), g()
        return tuple(_in_parallel(lambda h: h(), [(f,), (g,)], 2))

    return both


def chunked(denoise, device: torch.device, shift=None):
    """A `denoise(x, t)` that evaluates CPU batches chunk by chunk (fast path only).

    Batches above CPU_CHUNK run in chunks of at most CPU_CHUNK clips. With torch set to N >= 2 threads and a
    shift that draws nothing (an int), the chunks (then of at most ceil(B / N) clips, so a batch of 4 also splits)
    run on N worker threads of one torch thread each: on 2 cores that beats one chunk at a time on 2 threads
    (BENCHMARKS.md). With a shift generator (mmdiff.generate.shift_source) the chunks run one at a time, each
    starting from the same generator state, so every chunk gets the shifts the whole batch would, and the
    generator's state afterwards is the one a single forward leaves.
    """
    if not enabled() or torch.device(device).type != "cpu":
        return denoise
    gen = shift if isinstance(shift, torch.Generator) else None

    def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        workers = _workers_for(shift)
        size = chunk_size(x.shape[0], workers)
        if x.shape[0] <= size:
            return denoise(x, t)
        chunks = list(zip(x.split(size), t.split(size)))
        if workers > 1:
            return torch.cat(_in_parallel(denoise, chunks, min(workers, len(chunks))))
        state = gen.get_state() if gen is not None else None
        outs = []
        for xc, tc in chunks:
            if gen is not None:
                gen.set_state(state)
            outs.append(denoise(xc, tc))
        return torch.cat(outs)

    return run
