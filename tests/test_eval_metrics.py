"""Metric math against closed forms and hand-worked cases."""
import numpy as np
import pytest
import scipy.linalg

from eval import metrics as M


def exact_samples(mu, cov, n, seed=0):
    """n samples whose sample mean is exactly mu and unbiased sample covariance exactly cov."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, len(mu)))
    z -= z.mean(0)
    c = z.T @ z / (n - 1)
    z = z @ np.linalg.inv(np.linalg.cholesky(c)).T          # now cov(z) = I exactly
    return z @ np.linalg.cholesky(cov).T + mu


def random_spd(d, rng):
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_gaussian_stats_match_numpy():
    x = np.random.default_rng(1).standard_normal((50, 4))
    mu, s = M.gaussian_stats(x)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(s, np.cov(x, rowvar=False))
    _, sb = M.gaussian_stats(x, unbiased=False)
    np.testing.assert_allclose(sb, np.cov(x, rowvar=False, bias=True))


def test_frechet_diagonal_closed_form():
    # Diagonal covariances commute: FD = |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([3.0, 1.0, -2.0])
    x, y = exact_samples(mu1, np.diag(a), 40, 0), exact_samples(mu2, np.diag(b), 60, 1)
    expected = 9 + 16 + (1 + 1 + 1)
    assert M.frechet_distance(x, y) == pytest.approx(expected, rel=1e-10)


def test_frechet_2x2_non_commuting_closed_form():
    # For 2x2 PSD M: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); here M ~ S1 S2.
    rng = np.random.default_rng(3)
    s1, s2 = random_spd(2, rng), random_spd(2, rng)
    m = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    expected = 0.25 + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    got = M.frechet_distance_from_stats(np.zeros(2), s1, np.array([0.5, 0.0]), s2)
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_matches_scipy_sqrtm_high_dim():
    rng = np.random.default_rng(4)
    s1, s2 = random_spd(64, rng), random_spd(64, rng)
    ref = np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert M.frechet_distance_from_stats(np.zeros(64), s1, np.zeros(64), s2) == pytest.approx(ref, rel=1e-8)


def test_frechet_identical_zero_and_symmetric():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 40))
    y = rng.standard_normal((200, 40)) * 1.3 + 0.2
    assert M.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    assert M.frechet_distance(x, y) == pytest.approx(M.frechet_distance(y, x), rel=1e-10)
    assert M.frechet_distance(x, y) > 1.0


def test_frechet_rank_deficient_is_finite():
    # N < D: singular covariances (as a 400-d FVD with few clips); the root must stay real.
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((10, 50)), rng.standard_normal((12, 50)) + 1
    fd = M.frechet_distance(x, y)
    assert np.isfinite(fd) and fd > 0


def test_kernel_distance_hand_worked():
    # d=1, k(a,b)=(ab+1)^3; x={0,1}, y={2,3}:
    # Kxx off-diag k(0,1)=1 -> 1; Kyy off-diag k(2,3)=343 -> 343;
    # Kxy = {1, 1, 27, 64} -> mean 23.25; MMD^2 = 1 + 343 - 46.5 = 297.5
    x, y = np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]])
    assert M.kernel_distance(x, y) == pytest.approx(297.5)
    assert M.kernel_distance(y, x) == pytest.approx(297.5)


def test_kernel_distance_uses_one_over_d_gamma():
    # d=2: k(a,b)=(a.b/2+1)^3. x={(0,0),(2,0)}, y={(0,2),(2,2)}
    # Kxx off: k((0,0),(2,0))=1; Kyy off: (4/2+1)^3 = 27; Kxy: 1, 1, 1, (4/2+1)^3=27 -> mean 7.5
    x = np.array([[0.0, 0.0], [2.0, 0.0]])
    y = np.array([[0.0, 2.0], [2.0, 2.0]])
    assert M.kernel_distance(x, y) == pytest.approx(1 + 27 - 15)


def test_kernel_distance_identical_sets_closed_form():
    # Unbiased MMD^2 of a set with itself = 2 (mean off-diagonal - mean of all) (slightly negative).
    x = np.random.default_rng(7).standard_normal((30, 5))
    k = (x @ x.T / 5 + 1) ** 3
    off = (k.sum() - np.trace(k)) / (30 * 29)
    assert M.kernel_distance(x, x) == pytest.approx(2 * (off - k.mean()))
    assert M.kernel_distance(x, x) < 0


def test_kernel_distance_same_distribution_near_zero_and_shift_positive():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    assert abs(M.kernel_distance(x, y)) < 0.05
    assert M.kernel_distance(x, y + 1.0) > 0.5


def test_kernel_distance_subsets():
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((40, 6)), rng.standard_normal((40, 6)) + 0.5
    # A subset as large as the sets is a permutation: same value as the full MMD^2.
    assert M.kernel_distance(x, y, subsets=3, subset_size=100) == pytest.approx(M.kernel_distance(x, y))
    small = M.kernel_distance(x, y, subsets=20, subset_size=10, seed=1)
    assert small != pytest.approx(M.kernel_distance(x, y)) and small > 0
    assert small == M.kernel_distance(x, y, subsets=20, subset_size=10, seed=1)


def test_per_sample_frechet():
    rng = np.random.default_rng(10)
    ref = rng.standard_normal((100, 3))
    mu, s = M.gaussian_stats(ref)
    e = np.array([1.0, 2.0, 3.0])
    got = M.per_sample_frechet([e, ref], mu, s)
    assert got[0] == pytest.approx(np.sum((e - mu) ** 2) + np.trace(s))
    assert got[1] == pytest.approx(0.0, abs=1e-9)


def test_bootstrap_interval_brackets_value():
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((100, 4)), rng.standard_normal((100, 4)) + 1.0
    iv = M.bootstrap_ci(x, y, M.frechet_distance, num_boot=50, seed=0)
    assert iv.low < iv.value < iv.high
    assert iv.low > 1.0 and iv.high < 10.0          # true FD = 4


def test_basic_bootstrap_reflects_the_percentile_interval_and_covers_better():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((60, 12)), rng.standard_normal((60, 12)) + 0.3
    v = M.frechet_distance(x, y)
    pct = M.bootstrap_ci(x, y, M.frechet_distance, num_boot=40, seed=3, method="percentile")
    basic = M.bootstrap_ci(x, y, M.frechet_distance, num_boot=40, seed=3)           # same resamples
    assert basic.low == pytest.approx(2 * v - pct.high) and basic.high == pytest.approx(2 * v - pct.low)
    assert pct.low > v - 1e-9 or pct.high > basic.high          # the resamples' extra bias pushes it up
    # Coverage of the true FD (12 * 0.3^2 = 1.08) over repeated draws: FD's 1/N bias at N = 60, D = 12
    # puts the percentile interval above the truth nearly always; the basic one covers it far more often.
    hits = {"basic": 0, "percentile": 0}
    for rep in range(12):
        r = np.random.default_rng(100 + rep)
        xs, ys = r.standard_normal((60, 12)), r.standard_normal((60, 12)) + 0.3
        for method in hits:
            iv = M.bootstrap_ci(xs, ys, M.frechet_distance, num_boot=40, seed=rep, method=method)
            hits[method] += iv.low <= 1.08 <= iv.high
    assert hits["basic"] > hits["percentile"], hits
    with pytest.raises(ValueError, match="bootstrap method"):
        M.bootstrap_ci(x, y, M.frechet_distance, method="bca")


def test_frechet_infinity_default_subsets_have_full_rank_covariances():
    rng = np.random.default_rng(2)
    ref, y = rng.standard_normal((500, 40)), rng.standard_normal((100, 40))
    fit = M.frechet_distance_infinity(ref, y, num_points=5)
    assert min(fit.sizes) == 41                                   # D + 1, not len(y) // 4 = 25
    with pytest.raises(ValueError, match="more than D \\+ 2 = 42 samples"):
        M.frechet_distance_infinity(ref, y[:42])


def test_frechet_infinity_removes_sample_size_bias():
    # True FD = |delta|^2 = 0.25. FD at small N is biased upward (~ a/N); FD-inf is close to 0.25.
    rng = np.random.default_rng(1)
    delta = np.zeros(8)
    delta[0] = 0.5
    ref, y = rng.standard_normal((20000, 8)), rng.standard_normal((2000, 8)) + delta
    fit = M.frechet_distance_infinity(ref, y, num_points=10, min_size=200, seed=0)
    assert fit.slope > 0
    assert fit.value == pytest.approx(0.25, abs=0.05)
    assert abs(fit.value - 0.25) < abs(M.frechet_distance(ref, y[:200]) - 0.25)
    # The returned points are fitted exactly by least squares.
    sizes = np.array(fit.sizes, float)
    design = np.stack([1 / sizes, np.ones_like(sizes)], 1)
    np.testing.assert_allclose(np.linalg.lstsq(design, fit.distances, rcond=None)[0], [fit.slope, fit.value])


def test_bad_input_messages():
    with pytest.raises(ValueError, match="feature sizes differ"):
        M.frechet_distance(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        M.kernel_distance(np.zeros((1, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        M.frechet_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))
