"""Super-resolution of generated clips, frame by frame, with the core's samplers (paper Sec. 4.1).

The SR U-Net is wrapped into the same `(x, t) -> eps` denoiser contract the joint model uses, over a flat
state of frames (N, 3 * H * W), so DDPM, DDIM (the paper's choice: 25 steps) and DPM-Solver++ all work
unchanged. The learned variance output is used in training only (DDIM and DPM-Solver++ never use it; DDPM
here uses the fixed posterior variance).

Temporal consistency: with `noise="shared"` (the default, as the public code) every frame of a clip starts
from the same initial noise map, so a deterministic sampler maps identical low-resolution frames to
identical high-resolution ones; `noise="independent"` draws a fresh map per frame, for comparison.

The public code's SR stage (py_scripts/multimodal_sample_sr.py: DDIM over its "ddim25" respacing, eta 0,
clip_denoised, one noise map per clip) is `SR_SAMPLING["public"]`: DDIM 25 with `spacing="stride"`, the
levels 0, 40, ..., 960 of the public respacing, where our default "linspace" spacing takes 999, 957, ..., 0.
The learned variance does not enter DDIM at eta 0 (the public code uses only the eps half there too).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from mmdiff.diffusion.joint import Denoiser
from mmdiff.diffusion.samplers import Callback
from mmdiff.diffusion.schedule import Schedule
from mmdiff.generate import SamplerOptions, phase_callback, run_sampler
from mmdiff.nn.sr_unet import SRUNet, data_range, from_diffusion_space, upsample_condition

NOISE_MODES = ("shared", "independent")
SPACINGS = ("linspace", "stride")    # DDIM levels: linspace(T-1, 0, steps), or the public "ddimN" respacing
PAPER_SR_SAMPLER = SamplerOptions("ddim", steps=25)    # Table A.1: DDIM, 25 steps


@dataclass(frozen=True)
class SRSampling:
    """How the SR stage samples: `upscale(model, video, **SR_SAMPLING[name].kwargs(), seed=...)`."""

    options: SamplerOptions = PAPER_SR_SAMPLER
    noise: str = "shared"
    spacing: str = "linspace"

    def kwargs(self) -> dict:
        return {"options": self.options, "noise": self.noise, "spacing": self.spacing}


SR_SAMPLING: dict[str, SRSampling] = {
    "default": SRSampling(),
    # The released script's SR stage: DDIM on its ddim25 respacing, eta 0, clip_denoised, shared noise.
    "public": SRSampling(SamplerOptions("ddim", steps=25, eta=0.0, clip_denoised=True), "shared", "stride"),
}


def stride_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """The public code's "ddim{steps}" respacing (respace.space_timesteps): range(0, T, s) for the smallest
    stride s giving exactly `steps` levels; returned ascending."""
    for stride in range(1, num_timesteps):
        if len(range(0, num_timesteps, stride)) == steps:
            return list(range(0, num_timesteps, stride))
    raise ValueError(f"no integer stride gives exactly {steps} of {num_timesteps} steps")


class RespacedSchedule(Schedule):
    """The diffusion restricted to `levels` (ascending), indexed 0 .. len(levels) - 1, as the public code's
    SpacedDiffusion: abar at index i is the base's abar at levels[i]."""

    def __init__(self, base: Schedule, levels: list[int]):      # the tables come from `base`, not a config
        self.config = base.config
        self.levels = torch.tensor(levels, dtype=torch.long)                              # (S,)
        self.num_timesteps = len(levels)
        self.alphas_cumprod = base.alphas_cumprod[self.levels]                           # (S,) float64
        prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.betas = 1 - self.alphas_cumprod / prev

    def wrap(self, denoise: Denoiser) -> Denoiser:
        """A denoiser on the base's levels -> one on this schedule's indices."""
        return lambda x, t: denoise(x, self.levels.to(t.device)[t])

    def wrap_callback(self, callback: Callback | None) -> Callback | None:
        """Report the base's level as "t", as the samplers do without respacing."""
        if callback is None:
            return None
        return lambda info: callback({**info, "t": int(self.levels[info["t"]])})


def split_output(out: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, C or 2C, H, W) network output -> (eps (N, C, H, W), v (N, C, H, W) or None)."""
    if out.shape[1] == channels:
        return out, None
    return out[:, :channels], out[:, channels:]


def sr_predictor(model: SRUNet, low_up: torch.Tensor):
    """(x_t (N, 3, H, W), t) -> (eps, v or None), conditioned on the upsampled frames `low_up`."""

    def predict(x_t: torch.Tensor, t: torch.Tensor):
        return split_output(model(x_t, low_up.to(x_t), t), model.config.channels)

    return predict


def sr_denoiser(model: SRUNet, low_up: torch.Tensor, schedule: Schedule | None = None) -> Denoiser:
    """The flat-state contract of the samplers: (x (N, 3*H*W), t) -> eps (N, 3*H*W).

    With a `schedule`, the x0 estimate is clamped to the diffusion-space bounds of frames in [-1, 1]
    (`data_range`: per pixel in residual mode) and eps is made consistent with it; the samplers' own clamp
    to [-1, 1] must then be off (`upscale` does this), since in residual mode [-1, 1] is not the data range.
    """
    predict = sr_predictor(model, low_up)
    shape = low_up.shape[1:]
    lo, hi = data_range(model.config, low_up)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x_img = x.view(x.shape[0], *shape)                                       # (N, 3, H, W)
        eps, _ = predict(x_img, t)
        eps = eps.to(x.dtype)
        if schedule is not None:
            x0 = torch.clamp(schedule.predict_x0(x_img, t, eps), lo, hi)
            eps = schedule.predict_eps(x_img, t, x0)
        return eps.reshape(x.shape[0], -1)

    return denoise


def initial_noise(clips: int, frames: int, dim: int, mode: str, generator: torch.Generator,
                  device) -> torch.Tensor:
    """(clips * frames, dim) x_T; "shared" repeats one map per clip across its frames."""
    if mode not in NOISE_MODES:
        raise ValueError(f"noise must be one of {NOISE_MODES}, got {mode!r}")
    per = 1 if mode == "shared" else frames
    x = torch.randn((clips, per, dim), generator=generator, device=device)      # (B, 1 or F, D)
    return x.expand(clips, frames, dim).reshape(clips * frames, dim)


@torch.no_grad()
def upscale(model: SRUNet, video: torch.Tensor, options: SamplerOptions = PAPER_SR_SAMPLER, seed: int = 0,
            noise: str = "shared", batch_frames: int = 16, schedule: Schedule | None = None,
            callback: Callback | None = None, spacing: str = "linspace") -> torch.Tensor:
    """Upscale clips frame by frame. The initial noise and any sampler noise come from a generator this call
    seeds with `seed` (never torch's global RNG).

    :param video: (B, F, 3, h, w) in [-1, 1] with h = w = the SR model's low_size.
    :param batch_frames: frames denoised together (memory bound; the result does not depend on it for
        deterministic samplers).
    :param spacing: DDIM's levels: "linspace" (T-1 .. 0) or "stride" (the public code's ddimN respacing).
    :return: (B, F, 3, H, W) in [-1, 1], H = W = high_size.
    """
    cfg = model.config
    if video.ndim != 5 or tuple(video.shape[2:]) != (cfg.channels, cfg.low_size, cfg.low_size):
        raise ValueError(f"video must have shape (B, F, {cfg.channels}, {cfg.low_size}, {cfg.low_size}) for this "
                         f"SR model ({cfg.low_size} -> {cfg.high_size}), got {tuple(video.shape)}")
    if batch_frames < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
    if spacing not in SPACINGS or (spacing == "stride" and options.sampler != "ddim"):
        raise ValueError(f"spacing must be one of {SPACINGS} ('stride' for DDIM only), got {spacing!r} "
                         f"with {options.sampler}")
    schedule = schedule or Schedule()
    respaced = (RespacedSchedule(schedule, stride_timesteps(schedule.num_timesteps, options.steps))
                if spacing == "stride" else None)
    device = next(model.parameters()).device
    b, f = video.shape[:2]
    frames = video.reshape(b * f, cfg.channels, cfg.low_size, cfg.low_size).to(device)      # (N, 3, h, w)
    dim = cfg.channels * cfg.high_size ** 2
    sampler_options = dataclasses.replace(options, clip_denoised=False)      # sr_denoiser clamps instead
    was_training = model.training
    model.eval()
    try:
        gen = torch.Generator(device).manual_seed(seed)
        x_T = initial_noise(b, f, dim, noise, gen, device)                                   # (N, D)
        out, chunks = [], (b * f + batch_frames - 1) // batch_frames
        for k, start in enumerate(range(0, b * f, batch_frames)):
            low_up = upsample_condition(frames[start:start + batch_frames], cfg.high_size)   # (n, 3, H, W)
            denoise = sr_denoiser(model, low_up, schedule if options.clip_denoised else None)
            report = phase_callback(callback, k, chunks, chunk=k + 1, chunks=chunks)
            x_k = x_T[start:start + batch_frames].clone()                                     # (n, D)
            if respaced is None:
                x = run_sampler(sampler_options, denoise, x_k, schedule, gen, report)
            else:
                x = run_sampler(dataclasses.replace(sampler_options, steps=respaced.num_timesteps),
                                respaced.wrap(denoise), x_k, respaced, gen, respaced.wrap_callback(report))
            out.append(from_diffusion_space(cfg, x.view(low_up.shape), low_up))
    finally:
        model.train(was_training)
    return torch.cat(out).view(b, f, cfg.channels, cfg.high_size, cfg.high_size)


def bilinear_upscale(video: torch.Tensor, size: int) -> torch.Tensor:
    """(B, F, 3, h, w) -> (B, F, 3, size, size): the baseline the SR model must beat."""
    b, f = video.shape[:2]
    return upsample_condition(video.flatten(0, 1), size).clamp(-1, 1).view(b, f, video.shape[2], size, size)
