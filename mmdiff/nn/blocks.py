"""Residual blocks of the coupled U-Net (paper Fig. 3b "MM-Block").

One `ResBlock` implementation serves both streams; the modality only decides which convolution,
norm broadcast and resampling it uses. `MMBlock` pairs a video and an audio ResBlock that share one
timestep-embedding projection, and optionally adds video self-attention, audio self-attention and a
cross-modal layer (RS-MMA, or CMMD's easy fusion when `ModelConfig.cross_fusion == "easy"`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmdiff.nn.attention import RSMMA, AudioSelfAttention, VideoSelfAttention
from mmdiff.nn.fusion import EasyFusion
from mmdiff.nn.layers import (Resample, VideoConv, audio_conv, audio_pointwise, group_norm,
                              video_pointwise, zero_init)


def _conv3(modality: str, cin: int, cout: int, dilation: int) -> nn.Module:
    if modality == "image":
        return nn.Conv2d(cin, cout, 3, padding=1)
    return VideoConv(cin, cout) if modality == "video" else audio_conv(cin, cout, 3, dilation)


def _conv1(modality: str, cin: int, cout: int) -> nn.Module:
    if modality == "image":
        return nn.Conv2d(cin, cout, 1)
    return video_pointwise(cin, cout) if modality == "video" else audio_pointwise(cin, cout)


def _broadcast(emb: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B, C) -> (B, C, 1, ...) matching a feature tensor with `ndim` dims."""
    return emb.view(*emb.shape, *([1] * (ndim - 2)))


class ResBlock(nn.Module):
    """Pre-activation residual block with scale-shift (FiLM) timestep conditioning.

    h = Conv3tap(SiLU(GN(x)))                    2D+1D conv for video, dilated 1-D conv for audio,
                                                 3x3 conv for images (B, C, H, W) (the SR U-Net)
    h = Conv_out(Dropout(SiLU(GN(h) * (1 + scale) + shift)))   zero-initialised; 1x1, or 3-tap
                                                 with `out_kernel=3` (the ADM block the SR stage uses)
    out = skip(x) + h, with optional down/up-sampling of both paths.
    """

    def __init__(self, modality: str, cin: int, cout: int, dropout: float, dilation: int = 1,
                 resample: str | None = None, audio_factor: int = 4, out_kernel: int = 1):
        super().__init__()
        if out_kernel not in (1, 3) or (out_kernel == 3 and modality == "video"):
            raise ValueError(f"out_kernel must be 1, or 3 for images and audio; got {out_kernel} for {modality}")
        self.in_norm = group_norm(cin)
        self.in_conv = _conv3(modality, cin, cout, dilation)
        self.resample = Resample(modality, resample, audio_factor) if resample else nn.Identity()
        self.out_norm = group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        out_conv = _conv3(modality, cout, cout, dilation) if out_kernel == 3 else _conv1(modality, cout, cout)
        self.out_conv = zero_init(out_conv)
        self.skip = nn.Identity() if cin == cout else _conv1(modality, cin, cout)

    def forward(self, x: torch.Tensor, scale_shift: torch.Tensor) -> torch.Tensor:
        """:param x: (B, C, F, H, W), (B, C, H, W) or (B, C, T); :param scale_shift: (B, 2 * cout)."""
        h = self.resample(self.in_conv(nn.functional.silu(self.in_norm(x))))
        x = self.resample(x)
        scale, shift = _broadcast(scale_shift, h.ndim).chunk(2, dim=1)
        h = nn.functional.silu(self.out_norm(h) * (1 + scale) + shift)
        return self.skip(x) + self.out_conv(self.dropout(h))


@dataclass(frozen=True)
class BlockSpec:
    """What one MM-Block contains."""

    cin: int
    cout: int
    dilation: int = 1
    resample: str | None = None        # "down" | "up" | None
    video_attention: bool = False
    audio_attention: bool = False
    cross_window: int | None = None    # RS-MMA window S, or None for no cross-modal layer
    takes_skip: bool = False           # decoder block: concatenate the matching encoder output first


def cross_layer(cfg, channels: int, window: int) -> nn.Module:
    """The cross-modal layer of an MM-Block: RS-MMA with window S, or easy fusion (window unused)."""
    if cfg.cross_fusion == "easy":
        return EasyFusion(channels, cfg.video_frames)
    return RSMMA(channels, cfg.head_dim, window, cfg.video_frames, cfg.random_shift, cfg.inference_shift)


class MMBlock(nn.Module):
    """A coupled video+audio residual block, plus the attention layers its spec asks for."""

    def __init__(self, spec: BlockSpec, cfg, emb_dim: int):
        super().__init__()
        self.spec = spec
        self.has_video = "video" in cfg.modalities
        self.has_audio = "audio" in cfg.modalities
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * spec.cout))  # shared by both streams
        common = dict(cin=spec.cin, cout=spec.cout, dropout=cfg.dropout, resample=spec.resample,
                      audio_factor=cfg.audio_downsample)
        self.video = ResBlock("video", **common) if self.has_video else None
        self.audio = ResBlock("audio", dilation=spec.dilation, **common) if self.has_audio else None
        attn = (cfg.head_dim, cfg.self_attention_heads, cfg.self_attention_norm)
        self.video_attn = (VideoSelfAttention(spec.cout, *attn)
                           if spec.video_attention and self.has_video else None)
        self.audio_attn = (AudioSelfAttention(spec.cout, *attn)
                           if spec.audio_attention and self.has_audio else None)
        self.cross = (cross_layer(cfg, spec.cout, spec.cross_window)
                      if spec.cross_window and self.has_video and self.has_audio else None)

    def forward(self, video, audio, emb, shift=None):
        """:param emb: (B, E) step embedding shared by both streams, or a pair (video's, audio's).
        :param shift: RS-MMA's shift: an int R, a torch.Generator to draw it from, or None (see RSMMA)."""
        emb_v, emb_a = emb if isinstance(emb, tuple) else (emb, emb)
        ss = self.emb(emb_v)
        ss_a = ss if emb_a is emb_v else self.emb(emb_a)
        if self.video is not None:
            video = self.video(video, ss)
            if self.video_attn is not None:
                video = self.video_attn(video)
        if self.audio is not None:
            audio = self.audio(audio, ss_a)
            if self.audio_attn is not None:
                audio = self.audio_attn(audio)
        if isinstance(self.cross, RSMMA):
            video, audio = self.cross(video, audio, shift=shift)
        elif self.cross is not None:
            video, audio = self.cross(video, audio)
        return video, audio
