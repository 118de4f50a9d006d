"""Samplers over the joint state: pure functions `sample_x(denoise, x_T, schedule, ..., callback)`.

`denoise(x, t) -> eps` is any epsilon predictor on the flat joint state (see `joint.py`); zero-shot
conditioning wraps it (see `guidance.py`), so every sampler supports it. Each sampler ends on clean
data (abar = 1), except `mm-diffusion-dpm-solver`, which stops at level 0 as the released code does.
`callback(info)` is called after every step with
`{"step": i (1-based), "steps": n, "t": int, "x": state, "x0": denoised estimate}` for progress and previews.
Stochastic samplers draw only from the `generator` the caller passes. Which sampler reproduces which published
setting: docs/samplers.md.
"""
from __future__ import annotations

import math
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


def _require_generator(generator: torch.Generator | None, sampler: str) -> None:
    """Stochastic samplers draw only from the caller's generator, never torch's global RNG."""
    if generator is None:
        raise ValueError(f"{sampler} draws noise: pass a torch.Generator (the global RNG is never used)")


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
    _require_generator(generator, "DDPM")
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
    """DDIM (Song et al. 2021, Eq. 12) over `steps` evenly spaced levels; eta = 0 deterministic, 1 ~ DDPM
    (eta > 0 needs `generator`)."""
    if eta > 0:
        _require_generator(generator, "DDIM with eta > 0")
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


def singlestep_orders(steps: int, order: int) -> list[int]:
    """How DPM-Solver-fast spends `steps` model evaluations (Lu et al. 2022, Sec. 3.4): singlestep solvers of
    order `order`, then one lower-order step for the remainder (order 3, 20 steps: six 3rd-order + one 2nd)."""
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver order must be 1, 2 or 3, got {order}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if order == 3 and steps % 3 == 0:
        return [3] * (steps // 3 - 1) + [2, 1]
    return [order] * (steps // order) + ([steps % order] if steps % order else [])


def _noise_step(schedule: Schedule, x, s: float, t: float, eps_s, correction=0.0):
    """Exponential-integrator step of the noise-prediction ODE from time s to t (DPM-Solver-1 = DDIM), with a
    higher-order `correction`: x_t = alpha_t / alpha_s x_s - sigma_t ((e^h - 1) eps_s + correction),
    h = lambda_t - lambda_s."""
    la_s, la_t = schedule.log_alpha_at(s), schedule.log_alpha_at(t)
    h = schedule.log_snr_at(t) - schedule.log_snr_at(s)
    sigma_t = math.sqrt(-math.expm1(2.0 * la_t))
    return math.exp(la_t - la_s) * x - sigma_t * math.expm1(h) * eps_s - sigma_t * correction


@torch.no_grad()
def sample_dpm_solver(denoise: Denoiser, x: torch.Tensor, schedule: Schedule, steps: int = 20, order: int = 3,
                      callback: Callback | None = None, clip_denoised: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """DPM-Solver (Lu et al. 2022), noise prediction, singlestep ("DPM-Solver-fast"): the sampler of the released
    MM-Diffusion script (`--sample_fn dpm_solver`: steps 20, order 3), step for step.

    Continuous time t in [1/T, 1] (`Schedule.log_alpha_at`); `steps` + 1 times uniform in log-SNR from t = 1 to
    t = 1/T, walked in singlestep updates of the orders `singlestep_orders` gives, each update using the grid
    points inside it as its intermediate times. The network sees level `Schedule.level_at(t)` (truncated), the
    solver's coefficients the continuous alpha(t). It ends at t = 1/T (level 0, sigma = 0.01), with no final
    denoising step, as released. `callback` is called after every model evaluation ("x": the point evaluated).
    `generator` is unused (deterministic solver).
    """
    orders = singlestep_orders(steps, order)
    T = schedule.num_timesteps
    lam_T, lam_0 = schedule.log_snr_at(1.0), schedule.log_snr_at(1.0 / T)
    lams = torch.linspace(lam_T, lam_0, steps + 1, dtype=torch.float64).tolist()
    times = [1.0] + [schedule.time_at_log_snr(v) for v in lams[1:-1]] + [1.0 / T]
    done = 0

    def eps_at(u: torch.Tensor, t: float) -> torch.Tensor:
        nonlocal done
        level = schedule.level_at(t)
        x0, eps = _denoise(denoise, schedule, u, level, clip_denoised)
        _report(callback, done, steps, level, u, x0)
        done += 1
        return eps

    i = 0
    for k in orders:
        s, t = times[i], times[i + k]
        h = lams[i + k] - lams[i]
        eps_s = eps_at(x, s)
        if k == 1:
            x = _noise_step(schedule, x, s, t, eps_s)
        elif k == 2:                                                 # DPM-Solver-2 (Alg. 1), r1 from the grid
            r1 = (lams[i + 1] - lams[i]) / h
            eps_1 = eps_at(_noise_step(schedule, x, s, times[i + 1], eps_s), times[i + 1])
            x = _noise_step(schedule, x, s, t, eps_s, 0.5 / r1 * math.expm1(h) * (eps_1 - eps_s))
        else:                                                        # DPM-Solver-3 (Alg. 2), r1, r2 from the grid
            r1, r2 = (lams[i + 1] - lams[i]) / h, (lams[i + 2] - lams[i]) / h
            eps_1 = eps_at(_noise_step(schedule, x, s, times[i + 1], eps_s), times[i + 1])
            phi_22 = math.expm1(r2 * h) / (r2 * h) - 1.0
            u2 = _noise_step(schedule, x, s, times[i + 2], eps_s, r2 / r1 * phi_22 * (eps_1 - eps_s))
            eps_2 = eps_at(u2, times[i + 2])
            x = _noise_step(schedule, x, s, t, eps_s, (math.expm1(h) / h - 1.0) / r2 * (eps_2 - eps_s))
        i += k
    return x


SAMPLERS = {"ddpm": sample_ddpm, "ddim": sample_ddim, "dpm-solver++": sample_dpmpp,
            "mm-diffusion-dpm-solver": sample_dpm_solver}
