"""The Gaussian diffusion process (DDPM, Ho et al. 2020): linear betas, kept in float64."""
from __future__ import annotations

import numpy as np
import torch

from mmdiff.config import DiffusionConfig


def _bcast(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) float64 coefficients -> (B, 1, ...) in x's dtype and device."""
    return coef.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))


class Schedule:
    """Noise schedule q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), t = 0 .. T-1.

    All tables are float64 on the CPU; per-call coefficients are cast to the data's dtype/device.
    """

    def __init__(self, config: DiffusionConfig | None = None):
        self.config = config or DiffusionConfig()
        c = self.config
        if c.schedule != "linear":
            raise ValueError(f"unknown beta schedule {c.schedule!r}; only 'linear' is implemented")
        self.num_timesteps = c.num_timesteps
        self.betas = torch.linspace(c.beta_start, c.beta_end, c.num_timesteps, dtype=torch.float64)  # (T,)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)                               # (T,)
        # continuous time (below): level n at t_n = (n + 1) / T; log alpha decreasing in t
        self._times = np.arange(1, c.num_timesteps + 1, dtype=np.float64) / c.num_timesteps         # (T,)
        self._log_alphas = 0.5 * self.alphas_cumprod.log().numpy()                                 # (T,)

    def alpha_bar(self, t: torch.Tensor | int) -> torch.Tensor:
        """abar_t in float64; t = -1 means "clean" (abar = 1)."""
        t = torch.as_tensor(t)
        ab = self.alphas_cumprod[t.clamp(min=0).cpu()]
        return torch.where(t.cpu() < 0, torch.ones_like(ab), ab)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, per batch row."""
        ab = self.alpha_bar(t)
        return _bcast(ab.sqrt(), x0) * x0 + _bcast((1 - ab).sqrt(), x0) * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert q_sample given the noise: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        ab = self.alpha_bar(t)
        return _bcast(ab.rsqrt(), x_t) * x_t - _bcast(((1 - ab) / ab).sqrt(), x_t) * eps

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The noise that takes x0 to x_t at level t."""
        ab = self.alpha_bar(t)
        return (x_t - _bcast(ab.sqrt(), x_t) * x0) / _bcast((1 - ab).sqrt(), x_t)

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """lambda_t = log(alpha_t / sigma_t) = 0.5 * log(abar / (1 - abar)), float64."""
        return _log_snr(0.5 * self.alpha_bar(t).log())

    # Continuous time, as DPM-Solver reads a discrete schedule (Lu et al. 2022; its `NoiseScheduleVP('discrete')`):
    # level n sits at time t_n = (n + 1) / T, and log alpha = 0.5 log abar is linear in t between levels.
    def log_alpha_at(self, t: float) -> float:
        """log alpha(t) = 0.5 log abar at continuous time t in [1/T, 1]."""
        return float(np.interp(t, self._times, self._log_alphas))

    def log_snr_at(self, t: float) -> float:
        """lambda(t) at continuous time t in [1/T, 1]."""
        return float(_log_snr(torch.tensor(self.log_alpha_at(t), dtype=torch.float64)))

    def time_at_log_snr(self, lam: float) -> float:
        """The continuous time t in [1/T, 1] where lambda(t) = lam (the inverse of `log_snr_at`)."""
        log_alpha = -0.5 * float(np.logaddexp(0.0, -2.0 * lam))
        return float(np.interp(log_alpha, self._log_alphas[::-1], self._times[::-1]))

    def level_at(self, t: float) -> int:
        """The integer level a discrete-time network is given at time t: (t - 1/T) * T truncated, as MM-Diffusion's
        DPM-Solver wrapper does (so times between two levels go to the lower one)."""
        return int((t - 1.0 / self.num_timesteps) * self.num_timesteps)


def _log_snr(log_alpha: torch.Tensor) -> torch.Tensor:
    """lambda = log alpha - log sigma with sigma^2 = 1 - alpha^2 (the one log-SNR formula)."""
    return log_alpha - 0.5 * torch.log(-torch.expm1(2.0 * log_alpha))
