"""High-level sampling: seeded, unconditional or zero-shot conditional generation from a coupled U-Net.

This is the function the CLI, the evaluation package and the studio call; it never imports a UI.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mmdiff.diffusion.guidance import Condition, conditioned_denoiser
from mmdiff.diffusion.joint import JointLayout, model_denoiser
from mmdiff.diffusion.samplers import SAMPLERS, Callback
from mmdiff.diffusion.schedule import Schedule


@dataclass(frozen=True)
class SamplerOptions:
    """Which sampler and its settings. `steps` is ignored by DDPM (always the full T steps)."""

    sampler: str = "dpm-solver++"
    steps: int = 20
    eta: float = 0.0            # DDIM only
    order: int = 3              # DPM-Solver++ only (2 or 3); 3 as in the public MM-Diffusion sampler
    clip_denoised: bool = True  # clamp x0 estimates to the data range [-1, 1]

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {sorted(SAMPLERS)}")


def run_sampler(opts: SamplerOptions, denoise, x, schedule: Schedule, generator, callback):
    """Dispatch to one sampler with the options that apply to it."""
    common = dict(callback=callback, clip_denoised=opts.clip_denoised, generator=generator)
    if opts.sampler == "ddpm":
        return SAMPLERS["ddpm"](denoise, x, schedule, **common)
    if opts.sampler == "ddim":
        return SAMPLERS["ddim"](denoise, x, schedule, steps=opts.steps, eta=opts.eta, **common)
    return SAMPLERS["dpm-solver++"](denoise, x, schedule, steps=opts.steps, order=opts.order, **common)


def generate(model: torch.nn.Module, num: int = 1, options: SamplerOptions | None = None, seed: int = 0,
             condition: Condition | None = None, schedule: Schedule | None = None,
             callback: Callback | None = None):
    """Sample `num` clips. Returns (video (N, F, 3, H, W), audio (N, 1, T)) in [-1, 1] (None for absent streams).

    Deterministic given `seed`: the initial noise, DDPM/DDIM noise, replacement noise and RS-MMA shifts
    all come from generators seeded here; the global torch RNG is restored afterwards.
    With `condition`, its modality is returned exactly as given (clean).
    """
    opts = options or SamplerOptions()
    schedule = schedule or Schedule()
    cfg = model.config
    layout = JointLayout.from_config(cfg)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)                                            # RS-MMA shifts at inference
            gen = torch.Generator(device).manual_seed(seed)
            x = torch.randn((num, layout.size), generator=gen, device=device)   # (N, D) x_T
            denoise = model_denoiser(model, layout)
            if condition is not None:
                cond_gen = torch.Generator(device).manual_seed(seed + 1)
                value = condition.value.reshape(condition.value.shape[0], -1).to(device)
                if value.shape[0] not in (1, num):
                    raise ValueError(f"condition batch {value.shape[0]} must be 1 or num={num}")
                condition = Condition(condition.modality, value, condition.mode, condition.scale)
                denoise = conditioned_denoiser(denoise, layout, schedule, condition, cond_gen)
            x = run_sampler(opts, denoise, x, schedule, gen, callback)
            if condition is not None:
                x[:, layout.slices[condition.modality]] = condition.value.expand(num, -1)
    finally:
        model.train(was_training)
    video, audio = layout.unpack(x)
    return (video.clamp(-1, 1) if video is not None else None,
            audio.clamp(-1, 1) if audio is not None else None)
