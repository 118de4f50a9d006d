"""Training objectives.

- `diffusion_loss`: epsilon prediction with one timestep shared by both modalities (paper Eq. 7);
  loss = MSE(video eps) + MSE(audio eps) [+ contrastive_weight * contrastive]; every term is also returned
  separately for logging. A model that predicts v (ModelConfig.prediction) is trained on the v MSE instead.
  The contrastive term (CMMD) is described in contrastive.py.
- `hybrid_loss`: epsilon MSE plus the variational bound term that trains learned variances
  (Improved DDPM's L_hybrid; the super-resolution stage, Table A.1 "learn sigma").

Trained conditional generation (CMMD-style bidirectional conditioning, `cond_prob` > 0): each clip of a
joint batch is, with probability cond_prob, given one clean stream as a condition (video or audio with
equal odds). That stream enters the model clean with its own timestep 0 (the model takes one timestep per
stream, (B, 2)), and its loss is masked: only the generated stream is learned on that clip. Sampling
with `Condition(mode="trained")` feeds the model the same way (see guidance.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from mmdiff.diffusion.contrastive import contrastive_term, mismatched_x0, scored_streams
from mmdiff.diffusion.joint import Denoiser, JointLayout
from mmdiff.diffusion.schedule import Schedule
from mmdiff.diffusion.vlb import vlb_term


def draw_levels(schedule: Schedule, x0: torch.Tensor, generator: torch.Generator | None, min_t: int = 0):
    """(t (B,) int64 uniform in [min_t, T), noise like x0): one level per sample and its Gaussian noise."""
    if not 0 <= min_t < schedule.num_timesteps:
        raise ValueError(f"min_t must be in [0, {schedule.num_timesteps}), got {min_t}")
    t = torch.randint(min_t, schedule.num_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return t, noise


@dataclass
class NoisyBatch:
    """One training draw: clean state, noise, shared level t, which streams are given, model input."""

    x0: torch.Tensor        # (B, D) clean joint state
    noise: torch.Tensor     # (B, D)
    t: torch.Tensor         # (B,) int64 level of the generated streams
    given: torch.Tensor     # (B, M) bool: stream m of clip b is a clean condition (never noised, not learned)
    x_t: torch.Tensor       # (B, D) model input

    def model_t(self) -> torch.Tensor:
        """What the model gets: t (B,), or (B, M) with 0 for given streams when any stream is given."""
        return per_modality_t(self.t, self.given) if self.given.any() else self.t


def per_modality_t(t: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
    """(B,) shared timesteps -> (B, M): the shared t for generated streams, 0 for given (clean) ones."""
    return torch.where(given, torch.zeros_like(t)[:, None], t[:, None])


def noise_state(layout: JointLayout, schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                given: torch.Tensor) -> torch.Tensor:
    """x_t of q(x_t | x_0) per modality; given streams stay exactly clean. :param t: (B,) shared."""
    x_t = schedule.q_sample(x0, t, noise)
    if given.any():
        for k, s in enumerate(layout.slices.values()):
            x_t[:, s] = torch.where(given[:, k, None], x0[:, s], x_t[:, s])
    return x_t


def draw_noisy_batch(layout: JointLayout, schedule: Schedule, x0: torch.Tensor,
                     generator: torch.Generator | None = None, cond_prob: float = 0.0, min_t: int = 0) -> NoisyBatch:
    """Draw timesteps (in [min_t, T)), noise and (with cond_prob > 0) which clips get a clean stream as a
    condition."""
    if not 0.0 <= cond_prob <= 1.0:
        raise ValueError(f"cond_prob must be in [0, 1], got {cond_prob}")
    b, m = x0.shape[0], len(layout.slices)
    t, noise = draw_levels(schedule, x0, generator, min_t)                  # (B,), (B, D)
    given = torch.zeros((b, m), dtype=torch.bool, device=x0.device)
    if cond_prob > 0:
        if m != 2:
            raise ValueError("cond_prob > 0 needs a joint audio-video model")
        u = torch.rand((b, 2), generator=generator, device=x0.device)
        conditioned = u[:, 0] < cond_prob                                     # clip gets a condition ...
        which = (u[:, 1] < 0.5).long()                                        # ... video (0) or audio (1)
        given[conditioned, which[conditioned]] = True
    return NoisyBatch(x0, noise, t, given, noise_state(layout, schedule, x0, t, noise, given))


def drop_captions(text: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Caption dropout for classifier-free guidance: each row of (B, D) `text` becomes the null caption
    (all zeros) with probability p, so one model learns the conditional and the unconditional eps."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"caption dropout must be in [0, 1], got {p}")
    if p == 0:
        return text
    drop = torch.rand((text.shape[0],), generator=generator, device=text.device) < p     # (B,)
    return torch.where(drop[:, None], torch.zeros_like(text), text)


def denoising_terms(eps: torch.Tensor, batch: NoisyBatch, layout: JointLayout,
                    weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-modality eps MSE over the clips where that stream is generated (given streams are masked).
    :param weight: (B,) per-clip weights of the squared error (None: 1); `target_weight` gives them."""
    terms = {}
    for k, (m, s) in enumerate(layout.slices.items()):
        err = ((eps[:, s] - batch.noise[:, s]) ** 2).mean(dim=1)              # (B,)
        if weight is not None:
            err = err * weight
        keep = (~batch.given[:, k]).to(err.dtype)
        terms[m] = (err * keep).sum() / keep.sum().clamp(min=1)
    return terms


def target_weight(schedule: Schedule, t: torch.Tensor, prediction: str) -> torch.Tensor | None:
    """(B,) weights that turn the eps MSE at levels t into the MSE of the model's own target: None for eps;
    1 / abar_t for v, since eps = sqrt(1 - abar) x_t + sqrt(abar) v makes the eps error sqrt(abar) times the
    v error (mmdiff.diffusion.joint.v_to_eps)."""
    if prediction == "eps":
        return None
    if prediction != "v":
        raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
    return schedule.alpha_bar(t).reciprocal().to(torch.float32).to(t.device)


def diffusion_loss(denoise: Denoiser, layout: JointLayout, schedule: Schedule, x0: torch.Tensor,
                   generator: torch.Generator | None = None, cond_prob: float = 0.0,
                   contrastive_weight: float = 0.0, contrastive_temperature: float = 0.1,
                   prediction: str = "eps", min_t: int = 0) -> dict[str, torch.Tensor]:
    """:param x0: (B, D) clean joint state. Returns {"loss", "video", "audio"} scalars (present modalities),
    plus the unweighted "contrastive" term when contrastive_weight > 0.
    :param prediction: the model's target, "eps" or "v" (`denoise` returns eps either way, model_denoiser);
        each stream's term is the MSE of that target.
    :param min_t: train only on levels t >= min_t (e.g. a caption branch, whose information counts at high noise)."""
    batch = draw_noisy_batch(layout, schedule, x0, generator, cond_prob, min_t)
    weight = target_weight(schedule, batch.t, prediction)
    if contrastive_weight <= 0:
        terms = denoising_terms(denoise(batch.x_t, batch.model_t()), batch, layout, weight)
        terms["loss"] = sum(terms.values())
        return terms
    if len(layout.slices) != 2:
        raise ValueError("the contrastive term needs a joint audio-video model")
    scored = scored_streams(batch.given)
    x_neg = noise_state(layout, schedule, mismatched_x0(layout, x0, scored), batch.t, batch.noise, batch.given)
    t = batch.model_t()
    eps, eps_neg = denoise(torch.cat([batch.x_t, x_neg]), torch.cat([t, t])).chunk(2)   # one pass: DDP-safe
    terms = denoising_terms(eps, batch, layout, weight)
    terms["contrastive"] = contrastive_term(eps, eps_neg, batch.noise, scored, layout, contrastive_temperature)
    terms["loss"] = sum(v for k, v in terms.items() if k != "contrastive") + contrastive_weight * terms["contrastive"]
    return terms


def hybrid_loss(predict: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]],
                schedule: Schedule, x0: torch.Tensor, generator: torch.Generator | None = None) -> dict:
    """:param predict: (x_t, t) -> (eps, v or None), both shaped like x0 (B, ...).

    Returns {"loss", "mse", "vlb"} ("vlb" only with a variance output); the bound term sees a detached
    eps, so it trains only the variance.
    """
    t, noise = draw_levels(schedule, x0, generator)
    x_t = schedule.q_sample(x0, t, noise)
    eps, v = predict(x_t, t)
    terms = {"mse": ((eps - noise) ** 2).mean()}
    if v is not None:
        terms["vlb"] = vlb_term(schedule, x0, x_t, t, eps.detach(), v).mean()
    terms["loss"] = sum(terms.values())
    return terms
