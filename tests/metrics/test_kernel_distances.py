"""MMD and energy distance against closed forms, with standard errors from the sample size."""

from __future__ import annotations

import math

import pytest
import torch

from scorelab.metrics import energy_distance, mmd
from tests.conftest import Z
from tests.metrics.helpers import u_statistic_se

F64 = torch.float64
BANDWIDTHS = (0.5, 1.0, 2.0)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rbf(a, b, bandwidths=BANDWIDTHS):
    d2 = torch.cdist(a, b).square()
    return sum(torch.exp(-d2 / (2 * h**2)) for h in bandwidths)


def _mmd_h(x, y):
    """The kernel of MMD^2 as a U-statistic over pairs z_i = (x_i, y_i) (Gretton et al. 2012,
    for m = n): h_ij = k(x_i, x_j) + k(y_i, y_j) - k(x_i, y_j) - k(x_j, y_i)."""
    kxy = _rbf(x, y)
    return _rbf(x, x) + _rbf(y, y) - kxy - kxy.mT


def _mmd2_gaussians(shift, d, bandwidths=BANDWIDTHS):
    """Exact MMD^2 between N(0, I_d) and N(shift, I_d) for the sum of RBF kernels: X - X' is
    N(0, 2 I) and X - Y is N(-shift, 2 I), and E exp(-|W|^2 / (2 h^2)) for W ~ N(m, 2 I) is
    (h^2 / (h^2 + 2))^(d/2) exp(-|m|^2 / (2 (h^2 + 2)))."""
    total = 0.0
    for h in bandwidths:
        c = (h**2 / (h**2 + 2)) ** (d / 2)
        total += 2 * c * (1 - math.exp(-(shift**2) / (2 * (h**2 + 2))))
    return total


def test_mmd_of_a_set_with_itself_is_its_exact_small_negative_value():
    """With y = x the unbiased estimate is 2/n (mean_{i!=j} k(x_i, x_j) - k(0)), k(0) = 3 for
    three bandwidths: in [-6/n, 0], and exactly that value."""
    n = 300
    x = torch.randn(n, 2, generator=_gen(), dtype=F64)
    k = _rbf(x, x)
    mean_off = (k.sum() - k.diagonal().sum()) / (n * (n - 1))
    expected = 2 / n * (mean_off - 3)
    got = mmd(x, x, BANDWIDTHS)
    torch.testing.assert_close(got, expected)
    assert -6 / n <= got.item() <= 0


def test_mmd_of_two_samples_of_one_law_is_zero_within_its_standard_error():
    x, y = torch.randn(2, 800, 2, generator=_gen(1), dtype=F64)
    se = u_statistic_se(_mmd_h(x, y))
    assert abs(mmd(x, y, BANDWIDTHS).item()) <= Z * se, se


def test_mmd_matches_the_closed_form_and_grows_with_the_shift():
    """x ~ N(0, I), y ~ N(s e_1, I) in 2-D against the exact MMD^2, within Z standard errors of
    the U-statistic (estimated from the pairs; eq. 3 differs from it by O(1/n) terms)."""
    n, d = 800, 2
    x = torch.randn(n, d, generator=_gen(2), dtype=F64)
    noise = torch.randn(n, d, generator=_gen(3), dtype=F64)
    values = []
    for shift in (0.5, 1.0, 2.0):
        y = noise + torch.tensor([shift, 0.0], dtype=F64)
        got = mmd(x, y, BANDWIDTHS).item()
        se = u_statistic_se(_mmd_h(x, y))
        assert got == pytest.approx(_mmd2_gaussians(shift, d), abs=Z * se), (shift, se)
        values.append(got)
    assert values[0] < values[1] < values[2]
    # the median-distance bandwidths also separate the shifted set from a fresh sample
    fresh = torch.randn(n, d, generator=_gen(4), dtype=F64)
    assert mmd(x, noise + 1.0) > 10 * mmd(x, fresh).abs()


def _abs_mean_normal(m, s):
    """E|W| for W ~ N(m, s^2): the folded normal mean."""
    phi = 0.5 * math.erfc(m / (s * math.sqrt(2)))  # Phi(-m / s)
    return s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * s**2)) + m * (1 - 2 * phi)


def test_energy_distance_of_shifted_gaussians_matches_the_closed_form():
    """N(0, 1) vs N(d, 1) in 1-D: 2 E|X - Y| - E|X - X'| - E|Y - Y'| with X - Y ~ N(-d, 2) and
    X - X' ~ N(0, 2); tolerance Z standard errors of the U-statistic with kernel
    h_ij = |x_i - y_j| + |x_j - y_i| - |x_i - x_j| - |y_i - y_j|."""
    n = 1500
    x = torch.randn(n, 1, generator=_gen(5), dtype=F64)
    noise = torch.randn(n, 1, generator=_gen(6), dtype=F64)
    for d in (0.0, 0.5, 2.0):
        y = noise + d
        exact = 2 * _abs_mean_normal(-d, math.sqrt(2)) - 2 * _abs_mean_normal(0.0, math.sqrt(2))
        dxy = torch.cdist(x, y)
        se = u_statistic_se(dxy + dxy.mT - torch.cdist(x, x) - torch.cdist(y, y))
        got = energy_distance(x, y).item()
        assert got == pytest.approx(exact, abs=Z * se), (d, got, exact, se)


def test_energy_distance_of_a_set_with_itself():
    """With y = x: 2 S / n^2 - 2 S / (n (n - 1)) = -2 mean_{i!=j}|x_i - x_j| / n for the sum S of
    distances over distinct pairs: slightly negative, exactly known."""
    n = 400
    x = torch.randn(n, 3, generator=_gen(7), dtype=F64)
    mean_off = torch.cdist(x, x).sum() / (n * (n - 1))
    torch.testing.assert_close(energy_distance(x, x), -2 * mean_off / n)


def test_blocked_sums_equal_one_block_and_sizes_may_differ():
    x = torch.randn(130, 1, 2, 2, generator=_gen(8))  # images are flattened
    y = torch.randn(70, 1, 2, 2, generator=_gen(9)) + 0.3
    torch.testing.assert_close(mmd(x, y, chunk=7), mmd(x, y, chunk=1000))
    torch.testing.assert_close(energy_distance(x, y, chunk=7), energy_distance(x, y))
    assert mmd(x, y).dtype == torch.float32
    assert mmd(x, y.double()).dtype == F64


@pytest.mark.parametrize("fn", [mmd, energy_distance])
def test_bad_input(fn):
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="same event size"):
        fn(x, torch.randn(10, 3))
    with pytest.raises(ValueError, match="at least 2"):
        fn(x, torch.randn(1, 2))
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="y has 1 non-finite"):
        fn(x, bad)
    with pytest.raises(ValueError, match="floating"):
        fn(x, torch.ones(10, 2, dtype=torch.long))


def test_mmd_bad_bandwidths():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="bandwidths"):
        mmd(x, x, [1.0, -1.0])
    with pytest.raises(ValueError, match="pass bandwidths"):
        mmd(torch.zeros(10, 2), torch.zeros(10, 2))
