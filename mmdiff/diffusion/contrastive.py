"""CMMD's contrastive audio-video term (Yang, Gamper, Braun 2023), in the form of contrastive diffusion
(CDCD, Zhu et al. 2022, which CMMD builds on): a stream should be easier to denoise next to its own
partner than next to another clip's.

Representation: the model's own denoising error, not an embedding. For every clip b one stream is
*scored* and the other is its *context*. The model sees the batch twice, in one forward pass:
- matched:    (scored stream of b, context of b)        -> error e+_b of the scored stream
- mismatched: (scored stream of b, context of clip b+1) -> error e-_b of the scored stream
The scored stream's input, timestep, noise and target are identical in both; only the context differs
(the mismatched context is clip b+1's clean stream noised with clip b's noise at clip b's level, so
nothing but its content gives it away). Logits are -log(e) / temperature and the term is InfoNCE with the
matched pair as the positive: mean_b softplus(log(e+_b / e-_b) / temperature). It is minimised by a
model that denoises better with the right partner, i.e. one that uses the other stream; it saturates
once e- exceeds e+ by a margin, so it never asks for unbounded damage on mismatched input. Log errors
make it independent of the error's scale, which varies by orders of magnitude across timesteps.

Which stream is scored: on a clip with a clean condition (cond_prob > 0) the generated stream, with the
condition swapped (CMMD's conditional setting); on a joint clip, audio on even rows and video on odd
rows, so each step scores both directions. Cost: the mismatched half doubles the model's batch.

Not the embedding form (pooled bottleneck features of each stream, projected, CLIP-style InfoNCE over the
batch): in the coupled U-Net both streams' features have already been mixed by RS-MMA or easy fusion at
every attention scale, so such embeddings can match by copying each other without any gain in alignment.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from mmdiff.diffusion.joint import JointLayout


def info_nce(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -log softmax(logits[b])[positive[b]]. :param logits: (B, K); :param positive: (B,)."""
    return F.cross_entropy(logits.float(), positive)


def scored_streams(given: torch.Tensor) -> torch.Tensor:
    """(B, 2) bool given -> (B, 2) bool scored: the generated stream of conditioned clips, else alternating."""
    b = given.shape[0]
    audio_row = torch.arange(b, device=given.device) % 2 == 0              # joint clips: audio on even rows
    alternate = torch.stack([~audio_row, audio_row], dim=1)
    return torch.where(given.any(dim=1, keepdim=True), ~given, alternate)


def mismatched_x0(layout: JointLayout, x0: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """(B, D) clean states whose context stream (the unscored one) comes from the next clip, b -> b+1."""
    if x0.shape[0] < 2:
        raise ValueError("the contrastive term needs at least 2 clips per batch (the others are the negatives)")
    partner = x0.roll(-1, dims=0)                                            # row b holds clip b+1
    out = x0.clone()
    for k, s in enumerate(layout.slices.values()):
        out[:, s] = torch.where(scored[:, k, None], x0[:, s], partner[:, s])
    return out


def contrastive_term(eps_matched: torch.Tensor, eps_mismatched: torch.Tensor, noise: torch.Tensor,
                     scored: torch.Tensor, layout: JointLayout, temperature: float) -> torch.Tensor:
    """InfoNCE of matched against mismatched denoising error of each clip's scored stream (scalar)."""
    if temperature <= 0:
        raise ValueError(f"contrastive temperature must be positive, got {temperature}")
    err = []
    for eps in (eps_matched, eps_mismatched):
        per_stream = torch.stack([((eps[:, s] - noise[:, s]) ** 2).float().mean(dim=1)
                                  for s in layout.slices.values()], dim=1)   # (B, 2)
        err.append((per_stream * scored).sum(dim=1))                         # (B,) scored stream's error
    logits = -torch.stack(err, dim=1).clamp(min=1e-12).log() / temperature   # (B, 2): matched, mismatched
    return info_nce(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))
