"""Distances between two sets of features: pure functions on (N, D) arrays.

Stages (torch-fidelity style): features -> statistics -> distance.
- `gaussian_stats` / `frechet_distance_from_stats` / `frechet_distance`: FVD and FAD.
- `kernel_distance`: KVD as MM-Diffusion, DIGAN and TATS report it (one unbiased MMD^2 over all
  samples), or the KID-style mean over random subsets.
- `kernel_audio_distance`: KAD (Chung et al. 2025, arXiv 2502.15602), unbiased Gaussian-kernel MMD
  with the median-distance bandwidth, x100, as the authors' toolkit `kadtk` computes it.
- `per_sample_frechet`: per-sample FAD (CMMD, Fig. 4).
- `bootstrap_ci`: percentile bootstrap interval of any two-set metric.
- `frechet_distance_infinity`: FD extrapolated to infinite N (fit FD = a/N + b over subsets).
Everything is computed in float64.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

FAD_SCALE = 1e4  # MM-Diffusion reports FAD multiplied by 1e4 (paper Sec. 4.2)
KAD_SCALE = 100.0  # kadtk's SCALE_FACTOR: KAD is reported x100
KAD_EPS = 1e-8     # kadtk: gamma = 1 / (2 bandwidth^2 + eps)


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) feature array, got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples to estimate a covariance, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _check_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_features(x, "x"), _as_features(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: x has D={x.shape[1]}, y has D={y.shape[1]}")
    return x, y


def gaussian_stats(x: np.ndarray, unbiased: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), float64; unbiased divides by N-1."""
    x = _as_features(x, "features")
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = xc.T @ xc / (x.shape[0] - (1 if unbiased else 0))
    return mu, sigma


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via eigh (negative round-off clipped to 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) for symmetric PSD S1, S2.

    S1 S2 is similar to S1^(1/2) S2 S1^(1/2), which is symmetric PSD, so the trace of the root is
    the sum of square roots of its eigenvalues: stable, real, no complex round-off to discard.
    """
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance_from_stats(mu1: np.ndarray, sigma1: np.ndarray,
                                mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64 (Frechet distance of two Gaussians)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    # FD >= 0 in exact arithmetic; clip only the round-off of (nearly) identical statistics.
    tol = 1e-9 * (1.0 + np.trace(sigma1) + np.trace(sigma2))
    return 0.0 if -tol < fd < 0 else float(fd)


def frechet_distance(x: np.ndarray, y: np.ndarray, unbiased: bool = True) -> float:
    """Frechet distance between Gaussians fitted to features x (N, D) and y (M, D)."""
    x, y = _check_pair(x, y)
    return frechet_distance_from_stats(*gaussian_stats(x, unbiased), *gaussian_stats(y, unbiased))


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (gamma x.y + coef0)^degree with gamma = 1/D by default: (N, M) float64."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                  coef0: float = 1.0) -> float:
    """Unbiased MMD^2 with the polynomial kernel: mean off-diagonal k(x,x') + k(y,y') - 2 mean k(x,y)."""
    m, n = x.shape[0], y.shape[0]
    kxx = polynomial_kernel(x, x, degree, gamma, coef0)
    kyy = polynomial_kernel(y, y, degree, gamma, coef0)
    kxy = polynomial_kernel(x, y, degree, gamma, coef0)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_distance(x: np.ndarray, y: np.ndarray, subsets: int | None = None, subset_size: int = 1000,
                    seed: int = 0, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> float:
    """KVD/KID: unbiased polynomial-kernel MMD^2, k(x, y) = (x.y/D + 1)^3.

    subsets=None (default) is KVD as MM-Diffusion/DIGAN/TATS report it: one MMD^2 over all samples,
    unscaled (it can be slightly negative). subsets=K averages K random subsets of
    min(subset_size, N, M) samples drawn without replacement (KID style: K=100, size 1,000).
    """
    x, y = _check_pair(x, y)
    if subsets is None:
        return mmd2_unbiased(x, y, degree, gamma, coef0)
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    size = min(subset_size, x.shape[0], y.shape[0])
    rng = np.random.default_rng(seed)
    vals = [mmd2_unbiased(x[rng.choice(x.shape[0], size, replace=False)],
                          y[rng.choice(y.shape[0], size, replace=False)], degree, gamma, coef0)
            for _ in range(subsets)]
    return float(np.mean(vals))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) squared Euclidean distances |a_i|^2 + |b_j|^2 - 2 a_i.b_j (float64; round-off below 0 clipped)."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def median_pairwise_distance(x: np.ndarray) -> float:
    """Median Euclidean distance over the N (N - 1) / 2 pairs of distinct rows of x (N, D).

    For an even number of pairs the lower of the two middle values, as torch.median (kadtk) takes it.
    """
    from scipy.spatial.distance import pdist

    d = pdist(_as_features(x, "x"))
    k = (len(d) - 1) // 2
    return float(np.partition(d, k)[k])


def kernel_audio_distance(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None,
                          scale: float = KAD_SCALE, eps: float = KAD_EPS) -> float:
    """KAD: scale * unbiased MMD^2 between x (M, D) and y (N, D) with a Gaussian kernel.

    k(a, b) = exp(-|a - b|^2 / (2 h^2 + eps)); MMD^2 = mean_{i!=j} k(x_i, x_j) + mean_{i!=j} k(y_i, y_j)
    - 2 mean k(x_i, y_j); h = the median pairwise distance of y (`median_pairwise_distance`) unless
    given. This is kadtk's calc_kernel_audio_distance (Chung et al. 2025): there x is the baseline
    (reference) set and y the evaluated set, so the bandwidth comes from the EVALUATED set; call
    kernel_audio_distance(real, generated) to match `kadtk` scores. Computed in float64 (kadtk
    computes in float32 by default, which differs by up to ~2e-4 relative on small values). The
    unbiased estimate can be slightly negative when the sets come from one distribution.
    """
    x, y = _check_pair(x, y)
    h = median_pairwise_distance(y) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"KAD bandwidth must be positive, got {h} (are all rows of y identical?)")
    gamma = 1.0 / (2.0 * h * h + eps)
    m, n = len(x), len(y)
    kxx, kyy = np.exp(-gamma * _squared_distances(x, x)), np.exp(-gamma * _squared_distances(y, y))
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    sxy = np.exp(-gamma * _squared_distances(x, y)).mean()
    return float(scale * (sxx + syy - 2.0 * sxy))


def per_sample_frechet(samples: Sequence[np.ndarray], ref_mu: np.ndarray, ref_sigma: np.ndarray) -> np.ndarray:
    """Per-sample FD (CMMD Fig. 4): each sample's embeddings (n_i, D) against reference stats -> (S,).

    A sample with several embeddings (e.g. one per audio window) is fitted with its own mean and
    unbiased covariance; a sample with a single embedding has zero covariance, so its distance is
    ||e - mu_ref||^2 + tr(S_ref).
    """
    ref_mu = np.asarray(ref_mu, np.float64)
    out = np.empty(len(samples), np.float64)
    for i, e in enumerate(samples):
        e = np.atleast_2d(np.asarray(e, np.float64))
        if e.shape[1] != ref_mu.shape[0]:
            raise ValueError(f"sample {i} has D={e.shape[1]}, reference has D={ref_mu.shape[0]}")
        if e.shape[0] == 1:
            mu, sigma = e[0], np.zeros_like(ref_sigma, dtype=np.float64)
        else:
            mu, sigma = gaussian_stats(e)
        out[i] = frechet_distance_from_stats(mu, sigma, ref_mu, ref_sigma)
    return out


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval."""

    value: float
    low: float
    high: float
    level: float


BOOTSTRAP_METHODS = ("basic", "percentile")


def bootstrap_ci(x: np.ndarray, y: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float],
                 num_boot: int = 100, level: float = 0.95, seed: int = 0, method: str = "basic") -> Interval:
    """Bootstrap interval of metric(x, y), both sets resampled with replacement.

    "basic" (default): [2 v - q_hi, 2 v - q_lo], the resampled values reflected about the value v. FD is
    biased upward by about a / N, and a resample (duplicates, fewer distinct points) is biased more, so the
    "percentile" interval [q_lo, q_hi] sits above the value; the basic interval corrects that shift.
    The low end is not clipped: a negative low end says the interval reaches zero distance.
    """
    x, y = _check_pair(x, y)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if method not in BOOTSTRAP_METHODS:
        raise ValueError(f"bootstrap method must be one of {BOOTSTRAP_METHODS}, got {method!r}")
    rng = np.random.default_rng(seed)
    vals = np.array([metric(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))])
                     for _ in range(num_boot)])
    a = (1 - level) / 2
    value, q_lo, q_hi = float(metric(x, y)), float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))
    if method == "percentile":
        return Interval(value, q_lo, q_hi, level)
    return Interval(value, 2 * value - q_hi, 2 * value - q_lo, level)


@dataclass(frozen=True)
class InfinityFit:
    """FD(N) = slope / N + value fitted over subset sizes; value is FD at infinite N."""

    value: float
    slope: float
    sizes: tuple[int, ...]
    distances: tuple[float, ...]


def frechet_distance_infinity(x_ref: np.ndarray, y: np.ndarray, num_points: int = 15,
                              min_size: int | None = None, seed: int = 0) -> InfinityFit:
    """FD extrapolated to infinite N (Chong & Forsyth, FID-infinity; fadtk's FAD-inf).

    The reference x_ref is used whole; random subsets of y of num_points sizes evenly spaced in
    [min_size, len(y)] (default min_size = max(len(y) // 4, D + 1): a smaller subset has a singular
    covariance and does not follow a / n) give FD values that are fitted by least squares as
    FD = a / n + b; b is returned as `value`.
    """
    x_ref, y = _check_pair(x_ref, y)
    n, d = y.shape
    if min_size is None:
        if n < d + 3:
            raise ValueError(f"FD at infinity needs more than D + 2 = {d + 2} samples (subsets of at least D + 1 "
                             f"with a full-rank covariance), got {n}")
        min_size = max(2, n // 4, d + 1)
    if not 2 <= min_size < n:
        raise ValueError(f"min_size must be in [2, {n}) for {n} samples, got {min_size}")
    sizes = np.unique(np.linspace(min_size, n, num_points).astype(int))
    rng = np.random.default_rng(seed)
    mu_r, s_r = gaussian_stats(x_ref)
    fds = [frechet_distance_from_stats(*gaussian_stats(y[rng.choice(n, k, replace=False)]), mu_r, s_r)
           for k in sizes]
    design = np.stack([1.0 / sizes, np.ones(len(sizes))], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, np.array(fds), rcond=None)
    return InfinityFit(float(b), float(a), tuple(int(k) for k in sizes), tuple(float(f) for f in fds))
