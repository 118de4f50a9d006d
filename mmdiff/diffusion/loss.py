"""Training objective: epsilon prediction with one timestep shared by both modalities (paper Eq. 7).

loss = MSE(video eps) + MSE(audio eps); both terms are also returned separately for logging.
"""
from __future__ import annotations

import torch

from mmdiff.diffusion.joint import Denoiser, JointLayout
from mmdiff.diffusion.schedule import Schedule


def diffusion_loss(denoise: Denoiser, layout: JointLayout, schedule: Schedule, x0: torch.Tensor,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """:param x0: (B, D) clean joint state. Returns {"loss", "video", "audio"} scalars (present modalities)."""
    b = x0.shape[0]
    t = torch.randint(0, schedule.num_timesteps, (b,), generator=generator, device=x0.device)   # (B,)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)       # (B, D)
    eps = denoise(schedule.q_sample(x0, t, noise), t)
    terms = {m: ((eps[:, s] - noise[:, s]) ** 2).mean() for m, s in layout.slices.items()}
    terms["loss"] = sum(terms.values())
    return terms
