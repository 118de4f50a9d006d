"""Training objectives.

- `diffusion_loss`: epsilon prediction with one timestep shared by both modalities (paper Eq. 7);
  loss = MSE(video eps) + MSE(audio eps); both terms are also returned separately for logging.
- `hybrid_loss`: epsilon MSE plus the variational bound term that trains learned variances
  (Improved DDPM's L_hybrid; the super-resolution stage, Table A.1 "learn sigma").
"""
from __future__ import annotations

from typing import Callable

import torch

from mmdiff.diffusion.joint import Denoiser, JointLayout
from mmdiff.diffusion.schedule import Schedule
from mmdiff.diffusion.vlb import vlb_term


def draw_noise(schedule: Schedule, x0: torch.Tensor, generator: torch.Generator | None):
    """(t (B,), noise like x0, x_t like x0): one uniformly drawn level per sample and its forward sample."""
    t = torch.randint(0, schedule.num_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return t, noise, schedule.q_sample(x0, t, noise)


def diffusion_loss(denoise: Denoiser, layout: JointLayout, schedule: Schedule, x0: torch.Tensor,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """:param x0: (B, D) clean joint state. Returns {"loss", "video", "audio"} scalars (present modalities)."""
    t, noise, x_t = draw_noise(schedule, x0, generator)
    eps = denoise(x_t, t)
    terms = {m: ((eps[:, s] - noise[:, s]) ** 2).mean() for m, s in layout.slices.items()}
    terms["loss"] = sum(terms.values())
    return terms


def hybrid_loss(predict: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]],
                schedule: Schedule, x0: torch.Tensor, generator: torch.Generator | None = None) -> dict:
    """:param predict: (x_t, t) -> (eps, v or None), both shaped like x0 (B, ...).

    Returns {"loss", "mse", "vlb"} ("vlb" only with a variance output); the bound term sees a detached
    eps, so it trains only the variance.
    """
    t, noise, x_t = draw_noise(schedule, x0, generator)
    eps, v = predict(x_t, t)
    terms = {"mse": ((eps - noise) ** 2).mean()}
    if v is not None:
        terms["vlb"] = vlb_term(schedule, x0, x_t, t, eps.detach(), v).mean()
    terms["loss"] = sum(terms.values())
    return terms
