"""Learned reverse-process variances (Nichol & Dhariwal 2021, "Improved DDPM", Sec. 3.1) and the
variational bound term that trains them; used by the super-resolution stage (Table A.1: learn sigma).

The network outputs v in [-1, 1] per coordinate; the reverse variance is
    log Sigma_t = f log beta_t + (1 - f) log beta~_t,   f = (v + 1) / 2,
with beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t the posterior variance. The bound term L_t is the
KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) in bits per dimension (t > 0), or the discretised Gaussian
negative log-likelihood of x_0 (t = 0). The mean comes from a stop-gradient epsilon, so L_t trains only
the variance and the epsilon MSE trains the mean: L_hybrid = MSE + L_t (one t per sample, which is
lambda = 1/T times the full bound, as Improved DDPM's lambda = 0.001 at T = 1000).
"""
from __future__ import annotations

import math

import torch

from mmdiff.diffusion.schedule import Schedule, _bcast

LOG2 = math.log(2.0)


def posterior_log_variance(schedule: Schedule, t: torch.Tensor) -> torch.Tensor:
    """(B,) float64 log beta~_t, with beta~_0 replaced by beta~_1 (it is 0 at t = 0, as in ADM)."""
    t = t.cpu()
    ab, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t - 1)
    var = schedule.betas[t] * (1 - ab_prev) / (1 - ab)
    var1 = schedule.betas[1] * (1 - schedule.alpha_bar(0)) / (1 - schedule.alpha_bar(1))
    return torch.where(t == 0, var1, var).log()


def learned_log_variance(schedule: Schedule, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """log Sigma_t from the network's v (any shape (B, ...)), interpolating log beta~_t and log beta_t."""
    frac = (v + 1) / 2
    lo = _bcast(posterior_log_variance(schedule, t), v)
    hi = _bcast(schedule.betas[t.cpu()].log(), v)
    return frac * hi + (1 - frac) * lo


def posterior_mean(schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mean of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, Eq. 7)."""
    tc = t.cpu()
    ab, ab_prev, beta = schedule.alpha_bar(tc), schedule.alpha_bar(tc - 1), schedule.betas[tc]
    c0 = ab_prev.sqrt() * beta / (1 - ab)
    ct = (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)
    return _bcast(c0, x0) * x0 + _bcast(ct, x_t) * x_t


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """Elementwise KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) in nats."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1)


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_nll(x0: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise -log P(x0) in nats of 8-bit data in [-1, 1] under N(mean, e^log_var) integrated over
    each pixel's bin of width 2/255 (the outermost bins reach to -inf / +inf), as DDPM's decoder L_0."""
    inv_std = torch.exp(-0.5 * log_var)
    upper = _std_normal_cdf(inv_std * (x0 - mean + 1 / 255))
    lower = _std_normal_cdf(inv_std * (x0 - mean - 1 / 255))
    prob = torch.where(x0 < -0.999, upper, torch.where(x0 > 0.999, 1 - lower, upper - lower))
    return -prob.clamp(min=1e-12).log()


def vlb_term(schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
             v: torch.Tensor) -> torch.Tensor:
    """(B,) bound term L_t in bits per dimension. Pass a detached `eps` to train only the variance."""
    log_var = learned_log_variance(schedule, t, v)
    mean = posterior_mean(schedule, schedule.predict_x0(x_t, t, eps), x_t, t)
    true_mean = posterior_mean(schedule, x0, x_t, t)
    true_log_var = _bcast(posterior_log_variance(schedule, t), x0)
    kl = normal_kl(true_mean, true_log_var, mean, log_var)
    nll = discretized_gaussian_nll(x0, mean, log_var)
    per_elem = torch.where(_bcast(t.cpu() == 0, x0).bool(), nll, kl)
    return per_elem.flatten(1).mean(dim=1) / LOG2
