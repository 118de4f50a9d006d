"""Statistics of eval.study.stats against hand-computed values and published reference values."""
import math

import pytest

from eval.study.stats import krippendorff_alpha, mean_ci, wilson_interval


def test_mean_ci_hand_computed():
    # [1..5]: mean 3, s = sqrt(2.5), t_{0.975,4} = 2.7764451, half = 2.7764451 * sqrt(2.5) / sqrt(5)
    m, lo, hi = mean_ci([1, 2, 3, 4, 5])
    half = 2.7764451052 * math.sqrt(2.5) / math.sqrt(5)
    assert m == 3.0
    assert lo == pytest.approx(3 - half, abs=1e-8) and hi == pytest.approx(3 + half, abs=1e-8)
    assert (lo, hi) == pytest.approx((1.0367568, 4.9632432), abs=1e-6)
    # 90 %: t_{0.95,4} = 2.1318468
    _, lo90, _ = mean_ci([1, 2, 3, 4, 5], 0.90)
    assert lo90 == pytest.approx(3 - 2.1318468 * math.sqrt(0.5), abs=1e-6)


def test_mean_ci_degenerate():
    assert all(math.isnan(x) for x in mean_ci([]))
    m, lo, hi = mean_ci([4])
    assert m == 4 and math.isnan(lo) and math.isnan(hi)
    assert mean_ci([3, 3, 3]) == (3.0, 3.0, 3.0)


def test_wilson_hand_computed():
    # 8/10, z = 1.959964: centre = (0.8 + z^2/20) / (1 + z^2/10), half = z/(1+z^2/10) sqrt(0.016 + z^2/400)
    z = 1.959963985
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z / (1 + z * z / 10) * math.sqrt(0.8 * 0.2 / 10 + z * z / 400)
    p, lo, hi = wilson_interval(8, 10)
    assert p == 0.8
    assert (lo, hi) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_wilson_edges():
    p, lo, hi = wilson_interval(0, 10)
    assert p == 0 and lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    p, lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_krippendorff_hand_computed():
    # units [1,1], [2,2], [1,2]: o11 = o22 = 2, o12 = o21 = 1; n1 = n2 = 3, n = 6
    # D_o = 2/6, D_e = 2*3*3/(6*5) = 0.6 -> alpha = 1 - (1/3)/0.6 = 4/9
    units = [[1, 1], [2, 2], [1, 2]]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(4 / 9)
    assert krippendorff_alpha(units, "interval") == pytest.approx(4 / 9)
    assert krippendorff_alpha([[1, 1], [3, 3], [5, 5, 5]], "interval") == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha([[2, 2], [2, 2]]))
    assert math.isnan(krippendorff_alpha([[1], [2]]))   # nothing pairable


def test_krippendorff_reference_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 coders, 12 units, missing data.
    n = None
    coders = [[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
              [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
              [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
              [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]]
    units = [[c[i] for c in coders if c[i] is not None] for i in range(12)]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)
    with pytest.raises(ValueError, match="metric"):
        krippendorff_alpha(units, "ratio-ish")
