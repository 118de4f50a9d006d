"""Statistics for user studies: pure functions, no I/O.

- `mean_ci`: mean with a Student-t confidence interval (MOS, ITU-T P.800.2 style, over votes).
- `wilson_interval`: binomial proportion interval of Wilson (1927) (Turing pass rate), scipy's.
- `krippendorff_alpha`: inter-rater agreement. Chosen over Fleiss' kappa because on MTurk every
  clip is rated by a different subset of workers and some answers are dropped by quality control;
  alpha accepts any number of ratings per unit (units with fewer than two are unpairable and ignored)
  and has interval/ordinal metrics for 1-5 ratings (Krippendorff, "Computing Krippendorff's
  Alpha-Reliability", 2011; coincidence-matrix form).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

METRICS = ("nominal", "ordinal", "interval")


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): t-interval mean +- t_{(1+c)/2, n-1} * s / sqrt(n). NaN bounds when n < 2."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    half = float(sps.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """(p_hat, low, high) of the Wilson score interval for `successes` out of `n` trials (scipy.stats)."""
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return math.nan, math.nan, math.nan
    ci = sps.binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return successes / n, float(ci.low), float(ci.high)


def _coincidences(units: Sequence[Sequence[float]], values: np.ndarray) -> np.ndarray:
    """Coincidence matrix o[c, k] (V, V): each unit with m >= 2 ratings adds 1/(m-1) per ordered pair."""
    index = {v: i for i, v in enumerate(values.tolist())}
    o = np.zeros((len(values), len(values)))
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        counts = np.zeros(len(values))
        for v in unit:
            counts[index[float(v)]] += 1
        o += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    return o


def _delta2(values: np.ndarray, n_c: np.ndarray, metric: str) -> np.ndarray:
    """Squared difference delta^2[c, k] (V, V) of Krippendorff's metric."""
    if metric == "nominal":
        return 1.0 - np.eye(len(values))
    if metric == "interval":
        return (values[:, None] - values[None, :]) ** 2
    if metric == "ordinal":
        cum = np.cumsum(n_c)                      # sum_{g <= k} n_g
        lo = np.minimum.outer(np.arange(len(values)), np.arange(len(values)))
        hi = np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
        between = cum[hi] - cum[lo] + n_c[lo]     # sum_{g=lo}^{hi} n_g
        return (between - (n_c[:, None] + n_c[None, :]) / 2) ** 2
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def krippendorff_alpha(units: Sequence[Sequence[float]], metric: str = "interval") -> float:
    """Krippendorff's alpha over `units` (one list of numeric ratings per rated item).

    Ratings are numbers (Turing votes coded generated=0, cannot tell=1, real=2). Returns NaN when
    fewer than two pairable values exist or all values agree (expected disagreement is zero).
    """
    values = np.array(sorted({float(v) for u in units if len(u) >= 2 for v in u}))
    if values.size < 2:
        return math.nan
    o = _coincidences(units, values)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    d2 = _delta2(values, n_c, metric)
    observed = (o * d2).sum() / n
    expected = (np.outer(n_c, n_c) * d2).sum() / (n * (n - 1))
    if expected == 0:
        return math.nan
    return float(1.0 - observed / expected)
