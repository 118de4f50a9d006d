"""The coupled audio-video U-Net of MM-Diffusion (paper Sec. 3.3, Fig. 3, Table A.1).

Two U-Nets, one per modality, advance block by block in lock-step: each MM-Block holds a video and an
audio residual block (sharing a timestep projection), video self-attention at the attention scales,
and RS-MMA bridging the two streams there. Video downsamples H and W by 2 per scale; audio by 4 in T.
With `text_dim` > 0 a pooled caption embedding is projected and added to the step embedding, so the
caption modulates every block through its scale-shift (FiLM), like the timestep (docs/text.md).
"""
from __future__ import annotations

import torch
from torch import nn

from mmdiff.config import ModelConfig
from mmdiff.nn.blocks import BlockSpec, MMBlock
from mmdiff.nn.layers import VideoConv, audio_conv, group_norm, timestep_embedding, zero_init


def audio_dilations(cfg: ModelConfig) -> tuple[list[int], list[int], list[int]]:
    """Audio conv dilation of every encoder, middle and decoder block (res and resampling blocks alike).

    "mirrored": block k (from 0) of the encoder gets 2**(k mod cycle), the middle block the next k, and the
    decoder counts k back down, its up-sampling blocks sharing the preceding block's value (paper: 1..2^10).
    "public" (the public code's order): encoder block d counted from 1 gets 2**(d mod cycle), both middle
    blocks the next d; the decoder starts one below that and counts down, each up-sampling block taking the
    value of the res block that follows it (cycle 10: 2, 4, ..., 512, 1, 2 | 4, 4 | 2, 1, 512, 256, 256, ...).
    """
    n, r = len(cfg.channel_mult), cfg.num_res_blocks
    dil = lambda k: 2 ** (k % cfg.audio_dilation_cycle)  # noqa: E731
    n_down = n * r + n - 1                              # res blocks plus down-sampling blocks
    first = 1 if cfg.audio_dilation_schedule == "public" else 0
    down = [dil(first + i) for i in range(n_down)]
    middle = [dil(first + n_down)] * 2
    up: list[int] = []
    k = first + n_down
    for level in reversed(range(n)):
        for _ in range(r + 1):
            if cfg.audio_dilation_schedule == "public":
                up.append(dil(k - 1))
                k -= 1
            else:
                k -= 1
                up.append(dil(max(k, 0)))
        if level > 0:
            up.append(dil(k - 1) if cfg.audio_dilation_schedule == "public" else dil(max(k, 0)))
    return down, middle, up


def block_specs(cfg: ModelConfig) -> tuple[list[BlockSpec], list[BlockSpec], list[BlockSpec]]:
    """Lay out the encoder, middle and decoder blocks; returns (down, middle, up) specs (dilations:
    `audio_dilations`)."""
    chans = [cfg.base_channels * m for m in cfg.channel_mult]
    windows = dict(zip(cfg.attention_scales, cfg.cross_windows))
    dil_down, dil_middle, dil_up = (iter(d) for d in audio_dilations(cfg))
    down: list[BlockSpec] = []
    skips = [chans[0]]                                  # channels of each skip tensor (stem first)
    ch = chans[0]
    for level, cout in enumerate(chans):
        scale = level + 1
        attn = scale in windows
        for _ in range(cfg.num_res_blocks):
            down.append(BlockSpec(ch, cout, next(dil_down), None, attn, False, windows.get(scale)))
            ch = cout
            skips.append(ch)
        if level < len(chans) - 1:
            down.append(BlockSpec(ch, ch, next(dil_down), "down"))
            skips.append(ch)
    middle = [BlockSpec(ch, ch, next(dil_middle), None, True, True, cfg.video_frames if cfg.middle_cross else None),
              BlockSpec(ch, ch, next(dil_middle), None, True, True, None)]
    up: list[BlockSpec] = []
    for level in reversed(range(len(chans))):
        scale, cout = level + 1, chans[level]
        attn = scale in windows
        for i in range(cfg.num_res_blocks + 1):
            up.append(BlockSpec(ch + skips.pop(), cout, next(dil_up), None, attn, False, windows.get(scale),
                                takes_skip=True))
            ch = cout
        if level > 0:
            up.append(BlockSpec(ch, ch, next(dil_up), "up"))
    return down, middle, up


class CoupledUNet(nn.Module):
    """`model(video, audio, t, text=None) -> (eps_video, eps_audio)`.

    :param video: (B, F, 3, H, W) float, :param audio: (B, 1, T) float, :param t: (B,) int in [0, 1000)
        shared by both streams, or (B, 2) with one timestep per stream (columns: video, audio), e.g.
        t = 0 for a clean stream given as a condition (trained conditional generation).
    :param text: (B, text_dim) float caption embeddings for a text-conditioned config; None or all-zero
        rows are the null caption (unconditional). A config without text refuses it.
    Single-modality configs (`modalities=("video",)` or `("audio",)`) take None for the absent stream
    and return None for it.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        c0 = cfg.base_channels * cfg.channel_mult[0]
        emb_dim = cfg.time_embed_dim  # Table A.1: step embedding 128 wide, 2-layer MLP (no 4x widening)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_embed_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if cfg.text_dim:
            # Last layer zero-initialised: a new text model starts as the unconditional one.
            self.text_mlp = nn.Sequential(nn.Linear(cfg.text_dim, emb_dim), nn.SiLU(),
                                          zero_init(nn.Linear(emb_dim, emb_dim)))
        self.has_video = "video" in cfg.modalities
        self.has_audio = "audio" in cfg.modalities
        if self.has_video:
            self.video_in = VideoConv(cfg.video_channels, c0)
            if cfg.video_head == "3d":   # (B, C, F, H, W) -> (B, 3, F, H, W), 3x3x3 (the public code's head)
                head = zero_init(nn.Conv3d(c0, cfg.video_channels, 3, padding=1))
            else:
                head = VideoConv(c0, cfg.video_channels)
                zero_init(head.temporal)  # zero only the last factor: zeroing both would leave no gradient
            self.video_out = nn.Sequential(group_norm(c0), nn.SiLU(), head)
        if self.has_audio:
            self.audio_in = audio_conv(1, c0, 3)
            self.audio_out = nn.Sequential(group_norm(c0), nn.SiLU(), zero_init(audio_conv(c0, 1, 3)))
        down, middle, up = block_specs(cfg)
        self.down = nn.ModuleList(MMBlock(s, cfg, emb_dim) for s in down)
        self.middle = nn.ModuleList(MMBlock(s, cfg, emb_dim) for s in middle)
        self.up = nn.ModuleList(MMBlock(s, cfg, emb_dim) for s in up)

    # ------------------------------------------------------------------------------------
    def _check(self, name: str, x, expected: tuple[int, ...] | None) -> None:
        if expected is None:
            if x is not None:
                raise ValueError(f"this model has no {name} stream (modalities={self.config.modalities}); pass None")
            return
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, {', '.join(map(str, expected))})")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if tuple(x.shape[1:]) != expected or x.ndim != len(expected) + 1:
            raise ValueError(f"{name} must have shape (B, {', '.join(map(str, expected))}) for this config, "
                             f"got {tuple(x.shape)}")

    def _check_inputs(self, video, audio, t) -> int:
        cfg = self.config
        self._check("video", video, cfg.video_shape if self.has_video else None)
        self._check("audio", audio, cfg.audio_shape if self.has_audio else None)
        b = (video if video is not None else audio).shape[0]
        if video is not None and audio is not None and audio.shape[0] != b:
            raise ValueError(f"video batch {b} and audio batch {audio.shape[0]} differ")
        if not isinstance(t, torch.Tensor) or t.shape not in ((b,), (b, 2)) or t.is_floating_point():
            raise ValueError(f"t must be an integer tensor of shape ({b},) or ({b}, 2), got "
                             f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        return b

    def _text_embedding(self, text: torch.Tensor | None, b: int) -> torch.Tensor | None:
        """(B, text_dim) caption embedding -> (B, E), the null caption for None; None for a model without text."""
        dim = self.config.text_dim
        if not dim:
            if text is not None:
                raise ValueError("this model was trained without text conditioning (ModelConfig.text_dim = 0); "
                                 "pass text=None, or use a model trained with `mmdiff.train --text-cond`")
            return None
        weight = self.text_mlp[0].weight
        if text is None:
            text = torch.zeros((b, dim), device=weight.device)
        if not isinstance(text, torch.Tensor) or not text.is_floating_point() or tuple(text.shape) != (b, dim):
            raise ValueError(f"text must be a float tensor of shape ({b}, {dim}) (one {self.config.text_encoder} "
                             f"embedding per sample), got {tuple(getattr(text, 'shape', ()))}")
        return self.text_mlp(text.to(weight.dtype) * self.config.text_scale)

    def _embed(self, t: torch.Tensor, text: torch.Tensor | None = None):
        """(B,) -> (B, E) shared step embedding; (B, 2) -> (video's (B, E), audio's (B, E)); plus the caption's."""
        txt = self._text_embedding(text, t.shape[0])                            # (B, E) or None
        if t.ndim == 1:
            emb = self.time_mlp(timestep_embedding(t, self.config.time_embed_dim).to(self.time_mlp[0].weight.dtype))
            return emb if txt is None else emb + txt
        emb = self.time_mlp(timestep_embedding(t.T.reshape(-1), self.config.time_embed_dim).to(self.time_mlp[0].weight.dtype))  # (2B, E)
        emb_v, emb_a = emb.chunk(2, dim=0)
        return (emb_v, emb_a) if txt is None else (emb_v + txt, emb_a + txt)

    def forward(self, video: torch.Tensor | None, audio: torch.Tensor | None, t: torch.Tensor,
                text: torch.Tensor | None = None, shift: "int | torch.Generator | None" = None):
        """:param shift: every RS-MMA block's shift R: an int, a CPU torch.Generator owned by the caller to
        draw R from (one draw per block call, where the model's mode draws), or None (torch's global CPU RNG)."""
        self._check_inputs(video, audio, t)
        emb = self._embed(t, text)                                              # (B, E) or a (video, audio) pair
        dtype = next(self.parameters()).dtype
        v = self.video_in(video.to(dtype).transpose(1, 2)) if self.has_video else None   # (B, C, F, H, W)
        a = self.audio_in(audio.to(dtype)) if self.has_audio else None                  # (B, C, T)
        skips = [(v, a)]
        for block in self.down:
            v, a = block(v, a, emb, shift)
            skips.append((v, a))
        for block in self.middle:
            v, a = block(v, a, emb, shift)
        for block in self.up:
            if block.spec.takes_skip:
                sv, sa = skips.pop()
                v = torch.cat([v, sv], dim=1) if v is not None else None
                a = torch.cat([a, sa], dim=1) if a is not None else None
            v, a = block(v, a, emb, shift)
        eps_v = self.video_out(v).transpose(1, 2) if self.has_video else None        # (B, F, 3, H, W)
        eps_a = self.audio_out(a) if self.has_audio else None                          # (B, 1, T)
        return eps_v, eps_a
