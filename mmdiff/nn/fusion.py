"""CMMD's cross-modal "easy fusion" (Yang, Gamper, Braun 2023): a cheap, temporally aligned exchange of
pooled features between the streams, used where MM-Diffusion puts RS-MMA (`ModelConfig.cross_fusion`).

The audio of a layer (T_l samples) is split into F equal segments, one per frame, as in RS-MMA. Each
stream is pooled to one vector per frame: video over the H*W pixels of the frame, audio over the T_l/F
samples of the segment. Frame i's vector, normed and projected, is added to every audio sample of
segment i; segment i's vector, normed and projected, is added to every pixel of frame i. No attention:
the cost is two poolings and two (F x C) @ (C x C) products per block, against RS-MMA's windowed
attention over all HW * S * T_l/F token pairs of every frame.

The norms act on each pooled vector alone (LayerNorm), so the exchange is strictly frame-local: frame i
only ever reaches audio segment i and back. The output projections are zero-initialised, so the block
starts as the identity. Window size and random shift (RS-MMA's settings) do not apply.
"""
from __future__ import annotations

import torch
from torch import nn

from mmdiff.nn.layers import zero_init


class EasyFusion(nn.Module):
    """`fusion(video (B, C, F, H, W), audio (B, C, T)) -> (video, audio)`, T divisible by F."""

    def __init__(self, channels: int, frames: int):
        super().__init__()
        self.frames = frames
        self.video_norm = nn.LayerNorm(channels)
        self.audio_norm = nn.LayerNorm(channels)
        self.video_to_audio = zero_init(nn.Linear(channels, channels))
        self.audio_to_video = zero_init(nn.Linear(channels, channels))

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, f, h, w = video.shape
        t = audio.shape[-1]
        if f != self.frames or t % f:
            raise ValueError(f"easy fusion expects {self.frames} frames and audio length divisible by them, "
                             f"got F={f}, T={t}")
        seg = t // f
        per_frame = video.mean(dim=(3, 4)).transpose(1, 2)                     # (B, F, C)
        per_segment = audio.view(b, c, f, seg).mean(dim=3).transpose(1, 2)      # (B, F, C)
        to_audio = self.video_to_audio(nn.functional.silu(self.video_norm(per_frame)))    # (B, F, C)
        to_video = self.audio_to_video(nn.functional.silu(self.audio_norm(per_segment)))  # (B, F, C)
        audio = (audio.view(b, c, f, seg) + to_audio.transpose(1, 2)[..., None]).view(b, c, t)
        video = video + to_video.transpose(1, 2)[..., None, None]
        return video, audio
