"""Small building blocks shared by the video and audio streams.

Internal layouts (the public API layout of video is (B, F, C, H, W); the U-Net converts once):
- video features: (B, C, F, H, W)  channels-first, so spatial and temporal convs are Conv3d without permutes
- audio features: (B, C, T)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mmdiff.nn import fastpath


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups (fewer when `channels` is not a multiple of 32)."""
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-5)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a module's parameters so a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al.; as in DDPM/ADM).

    :param t: (B,) timesteps.
    :return: (B, dim) float32 embedding.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class VideoConv(nn.Module):
    """Factorised "2D+1D" convolution: a k x k spatial conv per frame, then a k-tap temporal conv.

    Acts on (B, C, F, H, W); frames are never strided. Both convs run as Conv2d (the spatial one on
    frames folded into the batch, the temporal one as a (k, 1) kernel over (F, H*W)), which keeps
    PyTorch's CPU convolutions on their fast path; Conv3d with (1, k, k) kernels is up to 6x slower
    on small inputs here (benchmarks/bench_core.py).

    The temporal conv starts as the identity (centre tap = I, other taps 0), so the block starts as a
    per-frame 2D conv (as Make-A-Video initialises its temporal layers). With PyTorch's random init, the
    tiny model learned a pair of opposite one-frame shifts (input conv: frame t+1 -> slot t; output head:
    slot t-1 -> frame t); interior frames do not mind, but frame 0's content falls off the zero padding,
    and after 3,100 steps frame 0's red and blue noise predictions were one shared mix (eps MSE 0.33 vs
    0.001-0.07 for the other frames at t = 20..900).
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        p = kernel // 2
        self.spatial = nn.Conv2d(cin, cout, kernel, padding=p)
        self.temporal = nn.Conv2d(cout, cout, (kernel, 1), padding=(p, 0))
        with torch.no_grad():
            self.temporal.weight.zero_()
            self.temporal.weight[:, :, p, 0] = torch.eye(cout)
            self.temporal.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        if fastpath.channels_last(max(c, self.spatial.out_channels)):   # both reshapes are views (fastpath.py)
            frames = x.transpose(1, 2).reshape(b * f, c, h, w).contiguous(memory_format=torch.channels_last)
            y = self.spatial(frames).reshape(b, f, -1, h * w).transpose(1, 2)       # (B, C', F, H*W)
            y = y.contiguous(memory_format=torch.channels_last)
            return self.temporal(y).reshape(b, -1, f, h, w)                         # (B, C', F, H, W)
        y = self.spatial(x.transpose(1, 2).reshape(b * f, c, h, w))                # (B*F, C', H, W)
        y = y.view(b, f, -1, h * w).transpose(1, 2).contiguous()                   # (B, C', F, H*W)
        return self.temporal(y).view(b, -1, f, h, w)                               # (B, C', F, H, W)


class VideoPointwise(nn.Module):
    """1x1x1 convolution on (B, C, F, H, W), run as a Conv2d over the (F, H*W) view (fast path on CPU)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        return fastpath.pointwise(self.conv, x.reshape(b, c, f, h * w)).view(b, -1, f, h, w)


def video_pointwise(cin: int, cout: int) -> VideoPointwise:
    return VideoPointwise(cin, cout)


def audio_conv(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> nn.Conv1d:
    """'same'-padded dilated 1-D convolution on (B, C, T)."""
    return nn.Conv1d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation)


def audio_pointwise(cin: int, cout: int) -> nn.Conv1d:
    return nn.Conv1d(cin, cout, 1)


_POOL = {"video": nn.functional.avg_pool3d, "image": nn.functional.avg_pool2d, "audio": nn.functional.avg_pool1d}


class Resample(nn.Module):
    """Down- or up-sampling of one stream: video by 2 in H and W (never in F), images (B, C, H, W) by 2,
    audio by `factor` in T.

    Average pooling down, nearest-neighbour up (as the public code with resblock_updown).
    """

    def __init__(self, modality: str, direction: str, audio_factor: int = 4):
        super().__init__()
        if modality not in _POOL or direction not in ("down", "up"):
            raise ValueError(f"bad Resample({modality!r}, {direction!r})")
        self.modality, self.direction = modality, direction
        self.factor = {"video": (1, 2, 2), "image": (2, 2), "audio": (audio_factor,)}[modality]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.modality == "video" and fastpath.enabled() and x.is_contiguous(memory_format=torch.channels_last_3d):
            # per frame in 2-D: keeps channels-last (fastpath.py)
            b, c, f, h, w = x.shape
            frames = x.transpose(1, 2).reshape(b * f, c, h, w)
            y = (nn.functional.interpolate(frames, scale_factor=2, mode="nearest") if self.direction == "up"
                 else nn.functional.avg_pool2d(frames, 2, 2))                       # (B*F, C, H', W')
            return y.reshape(b, f, c, *y.shape[-2:]).transpose(1, 2)                # (B, C, F, H', W')
        if self.direction == "up":
            return nn.functional.interpolate(x, scale_factor=self.factor, mode="nearest")
        return _POOL[self.modality](x, self.factor, self.factor)
