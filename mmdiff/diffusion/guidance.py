"""Zero-shot conditional generation (paper Sec. 3.4, Eq. 10-12): audio->video and video->audio.

Both methods wrap the denoiser, so they work with every sampler:
- replacement: before every model call the conditioning modality's part of the state is overwritten with a
  fresh forward sample q(x_t | x_0 = condition). For DDPM, DDIM and DPM-Solver++ the update of each
  coordinate depends only on that coordinate's state and prediction, so replacing the model input is
  exactly replacing the state (the sampler's own copy of the conditioning part is never read by the model
  and is reset to the clean condition at the end).
- gradient: replacement plus Eq. 10's score term. With L = ||x0_hat_cond(x_t) - condition||^2, the
  generated modality's noise prediction becomes eps + lambda * sqrt(1 - abar_t) * grad_{x_gen} L, the
  classifier-guidance form of Eq. 10-12 (eps = -sqrt(1 - abar) * score), which moves the generated part
  along -grad L as Eq. 12 does, in a way any sampler can use. The public code uses lambda = 3.0.
- trained (not zero-shot; CMMD-style): for a model trained with `cond_prob` > 0 (see loss.py). The
  conditioning part of every model input is the clean condition itself, with its own timestep 0, as in
  training; the generated part follows the sampler. The model must have learned this (an unconditionally
  trained model runs, but ignores nothing and knows nothing of a t = 0 stream next to a noisy one).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mmdiff.diffusion.joint import Denoiser, JointLayout
from mmdiff.diffusion.loss import per_modality_t
from mmdiff.diffusion.schedule import Schedule, _bcast

GUIDANCE_MODES = ("replacement", "gradient", "trained")


# lambda of Eq. 10/12 (gradient mode): the one default of the library, the CLI and the studio. The paper gives
# no value; benchmarks/bench_guidance.py sweeps it.
DEFAULT_GRADIENT_SCALE = 1.0


@dataclass
class Condition:
    """A given modality and how to condition on it.

    :param modality: "video" (video->audio) or "audio" (audio->video): the modality that is GIVEN.
    :param value: (B, D_modality) flat clean condition, or the modality's natural shape.
    :param mode: "replacement" or "gradient" (zero-shot), or "trained" (a model trained with cond_prob > 0).
    """

    modality: str
    value: torch.Tensor
    mode: str = "replacement"
    scale: float = DEFAULT_GRADIENT_SCALE

    def __post_init__(self) -> None:
        if self.mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance mode must be one of {GUIDANCE_MODES}, got {self.mode!r}")
        if self.modality not in ("video", "audio"):
            raise ValueError(f"condition modality must be 'video' or 'audio', got {self.modality!r}")


def conditioned_denoiser(denoise: Denoiser, layout: JointLayout, schedule: Schedule, cond: Condition,
                         generator: torch.Generator | None = None, record: list | None = None) -> Denoiser:
    """Wrap `denoise` for zero-shot conditioning on `cond`.

    :param generator: source of the forward-process noise used for replacement (separate from the sampler's).
    :param record: if a list is given, each model input state is appended to it (for tests and inspection).
    """
    if cond.modality not in layout.slices or len(layout.slices) < 2:
        raise ValueError(f"conditioning on {cond.modality} needs a joint audio-video model")
    given = layout.slices[cond.modality]
    gen = layout.slices["audio" if cond.modality == "video" else "video"]
    value = cond.value.reshape(cond.value.shape[0], -1)
    if value.shape[1] != given.stop - given.start:
        raise ValueError(f"condition {cond.modality} has {value.shape[1]} values per sample, "
                         f"the model expects {given.stop - given.start}")
    if cond.mode != "trained" and generator is None:
        raise ValueError(f"{cond.mode} conditioning draws noise: pass a torch.Generator (the global RNG is never used)")

    if cond.mode == "trained":
        is_given = torch.tensor([m == cond.modality for m in layout.slices])       # (M,) in layout order

        def trained(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x = x.clone()
            x[:, given] = value.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1)
            if record is not None:
                record.append(x.detach().clone())
            return denoise(x, per_modality_t(t, is_given.to(t.device).expand(x.shape[0], -1)))

        return trained

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = value.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1)
        noise = torch.randn(c.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x.clone()
        x[:, given] = schedule.q_sample(c, t, noise)
        if record is not None:
            record.append(x.detach().clone())
        if cond.mode == "replacement" or cond.scale == 0:
            return denoise(x, t)
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            eps = denoise(x_in, t)
            x0_cond = schedule.predict_x0(x_in[:, given], t, eps[:, given])
            loss = ((x0_cond - c) ** 2).sum()
            grad = torch.autograd.grad(loss, x_in)[0]
        eps = eps.detach().clone()
        sigma = _bcast((1 - schedule.alpha_bar(t)).sqrt(), eps)
        eps[:, gen] = eps[:, gen] + cond.scale * sigma * grad[:, gen]
        return eps

    return guided


def classifier_free_denoiser(cond: Denoiser, uncond: Denoiser, scale: float | torch.Tensor, both=None) -> Denoiser:
    """eps = eps_uncond + scale * (eps_cond - eps_uncond) (Ho & Salimans 2022, Eq. 6 with w = scale - 1).

    :param cond: the denoiser given the caption; :param uncond: the same model given the null caption.
    :param scale: one scale, or (D,) per coordinate of the flat joint state (`stream_scales`: one per stream).
    scale 0 is exactly `uncond` and scale 1 exactly `cond` (only that one is evaluated); other scales
    evaluate both, each once per step.
    :param both: `both(f, g) -> (f(), g())`, how the two calls of a step are made (e.g. concurrently:
        mmdiff.nn.fastpath.pair_runner); None: one after the other.
    """
    if not isinstance(scale, torch.Tensor):
        scale = float(scale)
        if scale == 0:
            return uncond
        if scale == 1:
            return cond

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if both is None:
            eps_u, eps_c = uncond(x, t), cond(x, t)
        else:
            eps_u, eps_c = both(lambda: uncond(x, t), lambda: cond(x, t))
        s = scale.to(x.device, x.dtype) if isinstance(scale, torch.Tensor) else scale
        return eps_u + s * (eps_c - eps_u)

    return guided


def stream_scales(layout: JointLayout, scale: float, audio_scale: float | None = None) -> float | torch.Tensor:
    """The guidance scale of every coordinate of the joint state: `scale`, or (D,) whose audio block has its own
    `audio_scale` (e.g. 1: the audio stays conditional without being amplified, while the video is guided)."""
    if audio_scale is None or float(audio_scale) == float(scale) or "audio" not in layout.slices:
        return float(scale)
    scales = torch.full((layout.size,), float(scale))                       # (D,)
    scales[layout.slices["audio"]] = float(audio_scale)
    return scales


def guidance_loss(denoise: Denoiser, layout: JointLayout, schedule: Schedule, cond: Condition,
                  x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """(B,) reconstruction error ||x0_hat_cond - condition||^2 of state x at level t with the given noise."""
    given = layout.slices[cond.modality]
    c = cond.value.reshape(cond.value.shape[0], -1).to(x)
    x = x.clone()
    x[:, given] = schedule.q_sample(c, t, noise)
    with torch.no_grad():
        eps = denoise(x, t)
    return ((schedule.predict_x0(x[:, given], t, eps[:, given]) - c) ** 2).sum(dim=1)
