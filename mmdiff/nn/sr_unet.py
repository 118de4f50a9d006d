"""The super-resolution U-Net of MM-Diffusion's second stage (paper Sec. 4.1, Table A.1 right; ADM).

A per-frame image diffusion U-Net: it denoises a high-resolution frame x_t given the low-resolution
frame, bilinearly upsampled to the high resolution and concatenated as extra input channels. It reuses
the core's residual block (`ResBlock` on images, 3x3 convolutions in and out, scale-shift timestep
conditioning, resampling inside down/up blocks as ADM's resblock_updown) and the core's token attention.

Two switches of `SRConfig` give the public (ADM / MM-Diffusion) layout exactly (preset "mm-diffusion-sr"):
`resample_first` makes the up/down blocks resample before their first conv (norm, SiLU, resample, conv;
the skip path is resampled too), and `attention="adm"` uses `GroupNormAttention` (GroupNorm(32) over the
channels, `num_heads` heads at every width). ADM's legacy q/k/v packing ([head][q, k, v][channel] rows of
its qkv projection) is a row order only: mmdiff.convert_sr reorders the rows to this module's
[q, k, v][head][channel], so one attention kernel serves both.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mmdiff.config import SRConfig
from mmdiff.nn.attention import TokenAttention, _heads, _merge
from mmdiff.nn.blocks import ResBlock
from mmdiff.nn.layers import group_norm, timestep_embedding, zero_init


def upsample_condition(low: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, h, w) low-resolution frames -> (N, 3, size, size) bilinear (the SR model's condition)."""
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def to_diffusion_space(cfg: SRConfig, high: torch.Tensor, low_up: torch.Tensor) -> torch.Tensor:
    """What the SR diffusion runs on: the frame, or residual_scale * (frame - upsampled low) (cfg.residual)."""
    return (high - low_up) * cfg.residual_scale if cfg.residual else high


def from_diffusion_space(cfg: SRConfig, x: torch.Tensor, low_up: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_diffusion_space`: (N, 3, H, W) frames in [-1, 1]."""
    return (x / cfg.residual_scale + low_up if cfg.residual else x).clamp(-1, 1)


def data_range(cfg: SRConfig, low_up: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """Bounds of the x0 clamp in diffusion space: [-1, 1] in frame mode. In residual mode [-1, 1] too (the
    scaled residual's nominal range: a correction of at most 1 / residual_scale, 16 8-bit levels at 8),
    narrowed per pixel so that the frame stays in [-1, 1]."""
    if not cfg.residual:
        return -1.0, 1.0
    lo = to_diffusion_space(cfg, -torch.ones_like(low_up), low_up).clamp(min=-1.0)
    hi = to_diffusion_space(cfg, torch.ones_like(low_up), low_up).clamp(max=1.0)
    return lo, hi


class ImageAttention(nn.Module):
    """Self-attention over the H*W positions of (N, C, H, W) features."""

    def __init__(self, channels: int, head_dim: int):
        super().__init__()
        self.attn = TokenAttention(channels, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = self.attn(x.flatten(2).transpose(1, 2))                 # (N, HW, C)
        return tokens.transpose(1, 2).reshape(n, c, h, w)


class GroupNormAttention(nn.Module):
    """ADM's attention block on (N, C, H, W): x + proj(MHA(qkv(GroupNorm(x)))) over the H*W positions, with
    `heads` heads whatever the width; qkv rows are [q, k, v][head][channel]."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.head_dim = channels // heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = self.norm(x.flatten(2)).transpose(1, 2)                          # (N, HW, C)
        q, k, v = (_heads(z, self.head_dim) for z in self.qkv(tokens).chunk(3, dim=-1))   # (N, heads, HW, d)
        out = self.proj(_merge(F.scaled_dot_product_attention(q, k, v)))         # (N, HW, C)
        return x + out.transpose(1, 2).reshape(n, c, h, w)


class ResampleFirstResBlock(ResBlock):
    """ADM's up/down residual block: norm, SiLU, resample, conv on the main path (the core's `ResBlock`
    convolves first), the skip path resampled too; the rest as `ResBlock`."""

    def forward(self, x: torch.Tensor, scale_shift: torch.Tensor) -> torch.Tensor:
        h = self.in_conv(self.resample(F.silu(self.in_norm(x))))
        x = self.resample(x)
        scale, shift = scale_shift[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.out_norm(h) * (1 + scale) + shift)
        return self.skip(x) + self.out_conv(self.dropout(h))


def sr_attention(cfg: SRConfig, width: int) -> nn.Module:
    """The attention layer `cfg.attention` asks for at `width` channels."""
    heads = cfg.heads(width)
    return GroupNormAttention(width, heads) if cfg.attention == "adm" else ImageAttention(width, width // heads)


class SRBlock(nn.Module):
    """One ADM block: a residual block (with its timestep projection), then attention if asked."""

    def __init__(self, cin: int, cout: int, cfg: SRConfig, emb_dim: int, resample: str | None = None,
                 attention: bool = False):
        super().__init__()
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout))
        block = ResampleFirstResBlock if resample and cfg.resample_first else ResBlock
        self.res = block("image", cin, cout, cfg.dropout, resample=resample, out_kernel=3)
        self.attn = sr_attention(cfg, cout) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, self.emb(emb))
        return self.attn(x) if self.attn is not None else x


class SRUNet(nn.Module):
    """`model(x_t, low_up, t) -> out` with out (N, 3, H, W) = eps, or (N, 6, H, W) = (eps, v) if learn_sigma.

    :param x_t: (N, 3, H, W) noisy high-resolution frames; :param low_up: (N, 3, H, W) the upsampled
        low-resolution frames (see `upsample_condition`); :param t: (N,) integer timesteps.
    v in [-1, 1] interpolates the log variance between the posterior variance and beta_t (Improved DDPM).
    """

    def __init__(self, cfg: SRConfig):
        super().__init__()
        self.config = cfg
        chans = [cfg.base_channels * m for m in cfg.channel_mult]
        emb_dim = cfg.time_embed_dim * cfg.time_embed_mult
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_embed_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(2 * cfg.channels, chans[0], 3, padding=1)
        self.down, skips, ch = nn.ModuleList(), [chans[0]], chans[0]
        for level, cout in enumerate(chans):
            attn = level + 1 in cfg.attention_scales
            for _ in range(cfg.num_res_blocks):
                self.down.append(SRBlock(ch, cout, cfg, emb_dim, attention=attn))
                ch = cout
                skips.append(ch)
            if level < len(chans) - 1:
                self.down.append(SRBlock(ch, ch, cfg, emb_dim, resample="down"))
                skips.append(ch)
        self.middle = nn.ModuleList([SRBlock(ch, ch, cfg, emb_dim, attention=True), SRBlock(ch, ch, cfg, emb_dim)])
        self.up, self.up_takes_skip = nn.ModuleList(), []
        for level in reversed(range(len(chans))):
            attn = level + 1 in cfg.attention_scales
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(SRBlock(ch + skips.pop(), chans[level], cfg, emb_dim, attention=attn))
                self.up_takes_skip.append(True)
                ch = chans[level]
            if level > 0:
                self.up.append(SRBlock(ch, ch, cfg, emb_dim, resample="up"))
                self.up_takes_skip.append(False)
        self.head = nn.Sequential(group_norm(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, cfg.out_channels, 3, padding=1)))

    def _check(self, x_t: torch.Tensor, low_up: torch.Tensor, t: torch.Tensor) -> None:
        c, s = self.config.channels, self.config.high_size
        for name, x in (("x_t", x_t), ("low_up", low_up)):
            if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
                raise ValueError(f"{name} must have shape (N, {c}, {s}, {s}) for this SR config, "
                                 f"got {tuple(getattr(x, 'shape', ()))}")
        if low_up.shape[0] != x_t.shape[0] or not isinstance(t, torch.Tensor) or t.shape != (x_t.shape[0],):
            raise ValueError(f"x_t {tuple(x_t.shape)}, low_up {tuple(low_up.shape)} and t "
                             f"{tuple(getattr(t, 'shape', ()))} must share the batch size N")

    def forward(self, x_t: torch.Tensor, low_up: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check(x_t, low_up, t)
        emb = self.time_mlp(timestep_embedding(t, self.config.time_embed_dim))    # (N, emb_dim)
        dtype = self.stem.weight.dtype
        h = self.stem(torch.cat([x_t, low_up], dim=1).to(dtype))                   # (N, C0, H, W)
        skips = [h]
        for block in self.down:
            h = block(h, emb)
            skips.append(h)
        for block in self.middle:
            h = block(h, emb)
        for block, takes_skip in zip(self.up, self.up_takes_skip):
            h = block(torch.cat([h, skips.pop()], dim=1) if takes_skip else h, emb)
        return self.head(h)                                                        # (N, out_channels, H, W)


def build_sr_model(preset_or_config) -> SRUNet:
    """The SR U-Net for a preset name ("paper", "tiny"), config dict or `SRConfig`."""
    from mmdiff.config import resolve_sr_config

    return SRUNet(resolve_sr_config(preset_or_config))
