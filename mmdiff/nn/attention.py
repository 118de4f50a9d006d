"""Attention: per-modality self-attention and RS-MMA, the random-shift multi-modal attention (Sec. 3.3).

All attention goes through `torch.nn.functional.scaled_dot_product_attention`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mmdiff.nn import fastpath
from mmdiff.nn.layers import group_norm, zero_init


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(N, L, C) -> (N, heads, L, head_dim)."""
    n, length, c = x.shape
    return x.view(n, length, c // head_dim, head_dim).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(N, heads, L, head_dim) -> (N, L, C)."""
    n, h, length, d = x.shape
    return x.transpose(1, 2).reshape(n, length, h * d)


def num_heads(channels: int, head_dim: int) -> int:
    if channels % head_dim:
        raise ValueError(f"channels {channels} are not a multiple of head_dim {head_dim}")
    return channels // head_dim


class TokenAttention(nn.Module):
    """Pre-norm multi-head self-attention over tokens (N, L, C), zero-initialised residual output.

    :param heads: 0 = channels // head_dim heads; N = N heads of channels // N (the public code: 4).
    :param norm: "layer" normalises each token (LayerNorm); "group" normalises the whole sequence with
        GroupNorm(32), as the public code does on its (N, C, L) layout.
    """

    def __init__(self, channels: int, head_dim: int, heads: int = 0, norm: str = "layer"):
        super().__init__()
        heads = heads or num_heads(channels, head_dim)
        if channels % heads:
            raise ValueError(f"channels {channels} are not a multiple of {heads} heads")
        self.head_dim = channels // heads
        self.norm_over_sequence = norm == "group"
        self.norm = group_norm(channels) if self.norm_over_sequence else nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_init(nn.Linear(channels, channels))

    def normed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, C) -> (N, L, C) normalised tokens."""
        if self.norm_over_sequence:
            return self.norm(x.transpose(1, 2)).transpose(1, 2)                  # GroupNorm over (C/32, L)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_heads(z, self.head_dim) for z in self.qkv(self.normed(x)).chunk(3, dim=-1))
        return x + self.proj(_merge(F.scaled_dot_product_attention(q, k, v)))


class VideoSelfAttention(nn.Module):
    """Factorised video self-attention: spatial (per frame, over H*W) then temporal (per pixel, over F)."""

    def __init__(self, channels: int, head_dim: int, heads: int = 0, norm: str = "layer"):
        super().__init__()
        self.spatial = TokenAttention(channels, head_dim, heads, norm)
        self.temporal = TokenAttention(channels, head_dim, heads, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        tokens = x.permute(0, 2, 3, 4, 1).reshape(b * f, h * w, c)           # (B*F, HW, C)
        tokens = self.spatial(tokens)
        tokens = tokens.view(b, f, h * w, c).transpose(1, 2).reshape(b * h * w, f, c)  # (B*HW, F, C)
        tokens = self.temporal(tokens)
        return fastpath.video_layout(tokens.view(b, h, w, f, c).permute(0, 4, 3, 1, 2))  # (B, C, F, H, W)


class AudioSelfAttention(nn.Module):
    """Self-attention over the audio sequence (used only in the middle block, as in the paper)."""

    def __init__(self, channels: int, head_dim: int, heads: int = 0, norm: str = "layer"):
        super().__init__()
        self.attn = TokenAttention(channels, head_dim, heads, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x.transpose(1, 2)).transpose(1, 2).contiguous()   # (B, C, T)


def window_index(frames: int, window: int, shift: int, device=None) -> torch.Tensor:
    """(F, S) index: row i lists the segments/frames i+shift, ..., i+shift+S-1 (mod F) that slot i attends to."""
    i = torch.arange(frames, device=device)[:, None]
    k = torch.arange(window, device=device)[None, :]
    return (i + shift + k) % frames


class RSMMA(nn.Module):
    """Random-shift based multi-modal attention (RS-MMA, paper Sec. 3.3, Eq. 8-9).

    The audio of a layer (T_l samples) is split into F equal segments, one per frame. With window S
    and shift R, every token of frame i attends to the audio tokens of segments i+R .. i+R+S-1, and
    every token of audio segment i attends to the video tokens of frames i+R .. i+R+S-1 (indices mod F).
    Cross-modal only, separate norms/projections per modality, zero-initialised outputs, residuals.
    The windows are gathered and attended with SDPA, so the cost is O(F * HW * S * T_l / F), never
    the O(F * HW * T_l) of masked full attention.

    Shift R: drawn uniformly from [0, F-S] per call (shared across batch and heads) when training
    with `random_shift`; at inference `inference_shift` picks "random" (as trained, as the public
    code does) or "zero" (aligned windows). Without `random_shift` R is 0 in training and at
    inference. `forward(..., shift=R)` forces a value; `forward(..., shift=generator)` draws R (where
    the mode draws one) from that torch.Generator, owned by the sampling call (mmdiff.generate), instead
    of torch's global CPU RNG, so concurrent jobs do not perturb each other's shifts.
    """

    def __init__(self, channels: int, head_dim: int, window: int, frames: int,
                 random_shift: bool = True, inference_shift: str = "random"):
        super().__init__()
        if not 1 <= window <= frames:
            raise ValueError(f"RS-MMA window {window} must be within 1..{frames}")
        num_heads(channels, head_dim)
        self.head_dim, self.window, self.frames = head_dim, window, frames
        self.random_shift, self.inference_shift = random_shift, inference_shift
        self.video_norm = group_norm(channels)
        self.audio_norm = group_norm(channels)
        self.video_qkv = nn.Linear(channels, 3 * channels)
        self.audio_qkv = nn.Linear(channels, 3 * channels)
        self.video_out = zero_init(nn.Linear(channels, channels))
        self.audio_out = zero_init(nn.Linear(channels, channels))

    def draw_shift(self, generator: torch.Generator | None = None) -> int:
        """The shift R for one call: random in [0, F-S] or 0, depending on mode.

        :param generator: a CPU torch.Generator to draw from; None draws from torch's global CPU RNG.
        """
        # A model trained without the shift (random_shift False) never saw one: it always uses R = 0.
        draw = self.random_shift and (self.training or self.inference_shift == "random")
        if not draw or self.window == self.frames:
            return 0
        # CPU RNG: no GPU sync
        return int(torch.randint(0, self.frames - self.window + 1, (), generator=generator, device="cpu").item())

    def forward(self, video: torch.Tensor, audio: torch.Tensor, shift: "int | torch.Generator | None" = None):
        """:param video: (B, C, F, H, W); :param audio: (B, C, T) with T divisible by F.
        :param shift: R itself (an int), a generator to draw it from, or None (torch's global CPU RNG)."""
        b, c, f, h, w = video.shape
        t = audio.shape[-1]
        if f != self.frames or t % f:
            raise ValueError(f"RS-MMA expects {self.frames} frames and audio length divisible by them, "
                             f"got F={f}, T={t}")
        r = shift if isinstance(shift, int) else self.draw_shift(shift)
        seg = t // f
        v_tok = self.video_norm(video).permute(0, 2, 3, 4, 1).reshape(b, f, h * w, c)   # (B, F, HW, C)
        a_tok = self.audio_norm(audio).transpose(1, 2).reshape(b, f, seg, c)           # (B, F, T/F, C)
        vq, vk, vv = self.video_qkv(v_tok).chunk(3, dim=-1)
        aq, ak, av = self.audio_qkv(a_tok).chunk(3, dim=-1)
        idx = window_index(f, self.window, r, video.device)                               # (F, S)

        def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return fastpath.window_attention(q, k, v, idx, self.head_dim)              # (B*F, L, C)

        v_att = self.video_out(attend(vq, ak, av)).view(b, f, h, w, c).permute(0, 4, 1, 2, 3)
        a_att = self.audio_out(attend(aq, vk, vv)).view(b, t, c).transpose(1, 2)
        return video + v_att, audio + a_att
