"""Embedding sets for the KAD reference values: seeded uniform draws (numpy PCG64 `random()`, whose
doubles are the same on every numpy version), shifted/scaled, optionally unit-normalised, as float32.

Each case: (name, seed, m, n, dim, y_shift, y_scale, unit_norm). x ~ U[0,1)^dim (m rows),
y ~ y_shift + y_scale * U[0,1)^dim (n rows). Pair counts n(n-1)/2 are both odd and even, so the
median's tie rule (the lower of the two middle values) matters.
"""
from __future__ import annotations

import numpy as np

CASES = (
    ("tiny-even-pairs", 1, 6, 5, 3, 0.1, 1.0, False),         # 10 pairs in y
    ("small", 2, 50, 40, 8, 0.2, 1.3, False),                # 780 pairs
    ("same-distribution", 3, 100, 100, 64, 0.0, 1.0, False),  # KAD ~ 0, can be negative
    ("odd-pairs", 4, 30, 50, 16, 0.05, 0.9, False),           # 1225 pairs
    ("audioclip-like", 5, 64, 96, 1024, 1.0, 30.0, False),    # large un-normalised norms
    ("clap-like-unit-norm", 6, 120, 80, 512, 0.02, 1.0, True),
)
HAND = {"x": [[0.0], [1.0]], "y": [[0.0], [2.0]]}             # KAD = 50 (exp(-1/2) - 1), see the test


def embeddings(case: tuple) -> tuple[np.ndarray, np.ndarray]:
    _, seed, m, n, dim, y_shift, y_scale, unit_norm = case
    rng = np.random.default_rng(seed)
    x = rng.random((m, dim))
    y = y_shift + y_scale * rng.random((n, dim))
    if unit_norm:
        x = x / np.sqrt((x * x).sum(1, keepdims=True))
        y = y / np.sqrt((y * y).sum(1, keepdims=True))
    return x.astype(np.float32), y.astype(np.float32)
