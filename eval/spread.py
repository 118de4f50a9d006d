"""How far FVD / KVD land from 0 when both sets come from one distribution: what N clips per set can resolve.

Two disjoint draws of the project's synthetic data (different seeds of `python -m mmdiff.data.synthetic`) have
true distance 0, so everything measured between them is the bias and noise of N clips per set. Measured with
`python -m benchmarks.bench_fvd_spread` (BENCHMARKS.md, "FVD / KVD at small N"); the studio's Evaluate tab
quotes these numbers when N is below the paper's 2,048.

    small_n_warning(64, ["fvd", "av-align"])   # "" at N >= 2,048 or without FVD/KVD
"""
from __future__ import annotations

import math

PROTOCOL_N = 2048                   # clips per set in the paper's protocol (Sec. 4.2)
SPREAD_METRICS = ("fvd", "kvd")     # the distances this table covers (I3D features)
SOURCE = "benchmarks/bench_fvd_spread.py, BENCHMARKS.md"

# N -> {metric: (mean, std over independent pairs)} and the number of pairs; I3D (TF-Hub weights), synthetic
# 16x32x32 clips at 10 fps evaluated at 64x64, eval.run --runs 1 (2-core CPU; N <= 256 on 2026-12-06 from pools
# of 256 clips, N = 1,024 and 2,048 on 2026-12-08 from pools of 2,048)
MEASURED: dict[int, dict] = {
    16: {"fvd": (286.14, 44.09), "kvd": (-1.30, 3.02), "pairs": 5},
    64: {"fvd": (109.95, 8.39), "kvd": (-0.16, 0.45), "pairs": 5},
    256: {"fvd": (32.02, 2.88), "kvd": (-0.10, 0.26), "pairs": 3},
    1024: {"fvd": (8.34, 0.62), "kvd": (0.01, 0.15), "pairs": 2},
    2048: {"fvd": (4.16, 0.31), "kvd": (0.00, 0.05), "pairs": 2},          # KVD 0.03 and -0.04: mean shown as 0
}


def nearest_measured(n: int) -> int:
    """The measured N closest to `n` on a log scale (N matters by its ratio)."""
    return min(MEASURED, key=lambda m: (abs(math.log(m) - math.log(max(int(n), 1))), m))


def small_n_warning(n, metrics) -> str:
    """Markdown: why N clips per set is too few for FVD/KVD to compare models, with the spread measured at the
    nearest N; "" when N reaches the protocol's 2,048 or neither FVD nor KVD is chosen."""
    chosen = [m for m in SPREAD_METRICS if m in (metrics or ())]
    if n is None or int(n) >= PROTOCOL_N or not chosen:
        return ""
    m = nearest_measured(int(n))
    row = MEASURED[m]
    values = " and ".join(f"{k.upper()} {row[k][0]:.3g} ± {row[k][1]:.3g}" for k in chosen)
    at = f"N = {m}" if m == int(n) else f"N = {m}, the measured N nearest to {int(n)}"
    return (f"**N = {int(n)} is small for {'/'.join(k.upper() for k in chosen)}** (the paper uses {PROTOCOL_N:,}). "
            f"Two disjoint sets of the *same* synthetic data, whose true distance is 0, measured {values} at {at} "
            f"(mean ± std over {row['pairs']} pairs; {SOURCE}): at this N, a value near that mean is no evidence "
            "of a difference, and differences between models within a few std are noise.")
