"""KAD against values the authors' toolkit produced (kadtk 1.1.0, calc_kernel_audio_distance), closed forms."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from eval.metrics import KAD_SCALE, kernel_audio_distance, median_pairwise_distance

DATA = Path(__file__).parent / "data" / "kad"
REF = json.loads((DATA / "reference.json").read_text())


def _cases():
    spec = importlib.util.spec_from_file_location("kad_cases", DATA / "cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _cases()


@pytest.mark.parametrize("case", CASES.CASES, ids=[c[0] for c in CASES.CASES])
def test_equals_kadtk(case):
    x, y = CASES.embeddings(case)
    ref = REF["cases"][case[0]]
    value = kernel_audio_distance(x, y)
    # kadtk with precision=float64 (its bandwidth is still a float32 median): measured <= 7e-8 relative.
    assert value == pytest.approx(ref["kad_float64"], rel=1e-6)
    # kadtk's default float32: its own round-off is up to ~2e-4 of values near zero.
    assert value == pytest.approx(ref["kad_float32"], rel=5e-4)
    # The bandwidth is the (lower) median pairwise distance of the SECOND set, as kadtk takes it.
    assert median_pairwise_distance(y) == pytest.approx(ref["bandwidth"], rel=1e-6)
    assert value == kernel_audio_distance(x, y, bandwidth=median_pairwise_distance(y))


def test_hand_computed_case():
    # x = {0, 1}, y = {0, 2} in 1-D: h = |0 - 2| = 2, gamma = 1 / (8 + eps); pairs: xx 1, yy 4, xy 0, 4, 1, 1.
    # (e^-g + e^-4g) - 2 (1 + e^-4g + 2 e^-g) / 4 = (e^-4g - 1) / 2  ->  KAD = 50 (e^(-4 / (8 + eps)) - 1).
    x, y = np.array(CASES.HAND["x"]), np.array(CASES.HAND["y"])
    expected = 50.0 * (np.exp(-4.0 / (8.0 + 1e-8)) - 1.0)
    assert kernel_audio_distance(x, y) == pytest.approx(expected, rel=1e-12)
    assert REF["hand"]["kad_float64"] == pytest.approx(expected, rel=1e-12)


def test_identical_sets_closed_form():
    # KAD(x, x) = 2 * scale * (mean off-diagonal k - 1) / n: the unbiased estimate is slightly negative.
    x, _ = CASES.embeddings(CASES.CASES[1])
    n, h = len(x), median_pairwise_distance(x)
    k = np.exp(-cdist(x.astype(np.float64), x.astype(np.float64), "sqeuclidean") / (2 * h * h + 1e-8))
    off = (k.sum() - n) / (n * (n - 1))
    assert kernel_audio_distance(x, x) == pytest.approx(2 * KAD_SCALE * (off - 1) / n, rel=1e-9)
    assert -2 * KAD_SCALE / n < kernel_audio_distance(x, x) < 0


def test_median_rule_and_bad_input():
    # 3 points on a line: pair distances 1, 2, 3 -> 2; 4 points: 1, 1, 1, 2, 2, 3 -> lower middle 1 (not 1.5).
    assert median_pairwise_distance(np.array([[0.0], [1.0], [3.0]])) == 2.0
    assert median_pairwise_distance(np.array([[0.0], [1.0], [2.0], [3.0]])) == 1.0
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        kernel_audio_distance(np.eye(3), np.ones((3, 3)))
    with pytest.raises(ValueError, match="feature sizes differ"):
        kernel_audio_distance(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        kernel_audio_distance(np.eye(3), np.ones((1, 3)))
