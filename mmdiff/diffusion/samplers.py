"""Samplers over the joint state: pure functions `sample_x(denoise, x_T, schedule, ..., callback)`.

`denoise(x, t) -> eps` is any epsilon predictor on the flat joint state (see `joint.py`); zero-shot
conditioning wraps it (see `guidance.py`), so every sampler supports it. Each sampler ends on clean
data (abar = 1). `callback(info)` is called after every step with
`{"step": i (1-based), "steps": n, "t": int, "x": state, "x0": denoised estimate}` for progress and previews.
"""
from __future__ import annotations

from typing import Callable

import torch

from mmdiff.diffusion.joint import Denoiser
from mmdiff.diffusion.schedule import Schedule, _bcast

Callback = Callable[[dict], None]


def _tvec(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)


def _denoise(denoise: Denoiser, schedule: Schedule, x: torch.Tensor, t: int, clip: bool):
    """Model evaluation at integer level t -> (x0 estimate, eps consistent with it)."""
    tt = _tvec(t, x)
    eps = denoise(x, tt)
    x0 = schedule.predict_x0(x, tt, eps)
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
        eps = schedule.predict_eps(x, tt, x0)
    return x0, eps


def _report(callback: Callback | None, i: int, n: int, t: int, x: torch.Tensor, x0: torch.Tensor) -> None:
    if callback is not None:
        callback({"step": i + 1, "steps": n, "t": int(t), "x": x, "x0": x0})


def spaced_timesteps(schedule: Schedule, steps: int) -> list[int]:
    """`steps` integer levels evenly spaced from T-1 down to 0 (DDIM respacing)."""
    T = schedule.num_timesteps
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in 1..{T}, got {steps}")
    ts = torch.linspace(T - 1, 0, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(ts), reverse=True)


def logsnr_timesteps(schedule: Schedule, steps: int) -> list[int]:
    """`steps` integer levels from T-1 to 0, uniform in log-SNR (the DPM-Solver spacing), deduplicated."""
    T = schedule.num_timesteps
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in 1..{T}, got {steps}")
    lam_all = schedule.log_snr(torch.arange(T))                                   # increasing as t falls
    targets = torch.linspace(float(lam_all[-1]), float(lam_all[0]), steps, dtype=torch.float64)
    ts = [int(torch.argmin((lam_all - v).abs())) for v in targets]
    out = sorted(set(ts), reverse=True)
    # Near t = 0 the log-SNR grid is coarse; fill to `steps` distinct levels with the nearest unused ones.
    free = [t for t in range(T - 1, -1, -1) if t not in out]
    while len(out) < steps and free:
        out.append(free.pop())
        out = sorted(set(out), reverse=True)
    return out


@torch.no_grad()
def sample_ddpm(denoise: Denoiser, x: torch.Tensor, schedule: Schedule, generator: torch.Generator | None = None,
                callback: Callback | None = None, clip_denoised: bool = False) -> torch.Tensor:
    """DDPM ancestral sampling over all T steps (Ho et al. 2020, Alg. 2), posterior ("fixed small") variance."""
    T = schedule.num_timesteps
    for i, t in enumerate(range(T - 1, -1, -1)):
        x0, _ = _denoise(denoise, schedule, x, t, clip_denoised)
        ab, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t - 1)
        beta = schedule.betas[t]
        c0 = ab_prev.sqrt() * beta / (1 - ab)                      # posterior mean coefficients (Eq. 7)
        ct = (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)
        mean = _bcast(c0.view(1), x) * x0 + _bcast(ct.view(1), x) * x
        if t > 0:
            var = beta * (1 - ab_prev) / (1 - ab)
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean + float(var.sqrt()) * z
        else:
            x = mean
        _report(callback, i, T, t, x, x0)
    return x


@torch.no_grad()
def sample_ddim(denoise: Denoiser, x: torch.Tensor, schedule: Schedule, steps: int = 50, eta: float = 0.0,
                generator: torch.Generator | None = None, callback: Callback | None = None,
                clip_denoised: bool = False) -> torch.Tensor:
    """DDIM (Song et al. 2021, Eq. 12) over `steps` evenly spaced levels; eta = 0 deterministic, 1 ~ DDPM."""
    ts = spaced_timesteps(schedule, steps)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        x0, eps = _denoise(denoise, schedule, x, t, clip_denoised)
        ab, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        dir_coef = (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt()
        x = float(ab_prev.sqrt()) * x0 + float(dir_coef) * eps
        if sigma > 0:
            x = x + float(sigma) * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        _report(callback, i, len(ts), t, x, x0)
    return x


def _dpmpp_update(x, m, lam, alpha, sigma, order):
    """One DPM-Solver++ multistep update (Lu et al. 2022, Alg. 2 and its 3rd-order variant).

    :param m: data predictions [m_i, m_{i-1}, m_{i-2}] (newest first); :param lam/alpha/sigma:
        [next, current, previous, before] log-SNRs and coefficients (float).
    """
    h = lam[0] - lam[1]
    phi1 = torch.expm1(torch.tensor(-h, dtype=torch.float64)).item()          # e^{-h} - 1
    x_next = (sigma[0] / sigma[1]) * x - alpha[0] * phi1 * m[0]
    if order == 2:
        r0 = (lam[1] - lam[2]) / h
        d1 = (m[0] - m[1]) / r0
        x_next = x_next - 0.5 * alpha[0] * phi1 * d1
    elif order == 3:
        r0, r1 = (lam[1] - lam[2]) / h, (lam[2] - lam[3]) / h
        d1_0, d1_1 = (m[0] - m[1]) / r0, (m[1] - m[2]) / r1
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi2 = phi1 / h + 1.0
        phi3 = phi2 / h - 0.5
        x_next = x_next + alpha[0] * phi2 * d1 - alpha[0] * phi3 * d2
    return x_next


@torch.no_grad()
def sample_dpmpp(denoise: Denoiser, x: torch.Tensor, schedule: Schedule, steps: int = 20, order: int = 3,
                 callback: Callback | None = None, clip_denoised: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """DPM-Solver++ multistep (Lu et al. 2022), data prediction, log-SNR spaced steps.

    Order 2 or 3; lower orders warm up the first steps, and the final step to clean data (sigma = 0) is
    first order (exactly the last data prediction). `generator` is unused (deterministic solver).
    """
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3, got {order}")
    ts = logsnr_timesteps(schedule, steps)
    ab = [float(schedule.alpha_bar(t)) for t in ts]
    lam = [float(schedule.log_snr(torch.tensor(t))) for t in ts]
    alpha = [a ** 0.5 for a in ab]
    sigma = [(1 - a) ** 0.5 for a in ab]
    hist: list[torch.Tensor] = []
    for i, t in enumerate(ts):
        x0, _ = _denoise(denoise, schedule, x, t, clip_denoised)
        hist = [x0] + hist[:2]
        if i + 1 == len(ts):
            x = x0                                                  # sigma_next = 0: x = data prediction
        else:
            k = min(order, len(hist), len(ts) - 1 - i) if len(ts) < 15 else min(order, len(hist))
            j = i + 1
            lams = [lam[j], lam[i]] + [lam[i - q] for q in range(1, k)]
            x = _dpmpp_update(x, hist, lams, [alpha[j], alpha[i]], [sigma[j], sigma[i]], k)
        _report(callback, i, len(ts), t, x, x0)
    return x


SAMPLERS = {"ddpm": sample_ddpm, "ddim": sample_ddim, "dpm-solver++": sample_dpmpp}
