"""Laplace, banana, funnel and user functions: scores, normalization and exact sampling."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from scorelab.densities import NAMED, Banana, Funnel, Laplace, autograd_score, from_log_prob, make
from tests.conftest import assert_mean_cov

F64 = torch.float64
N = 200_000
# Kolmogorov-Smirnov with a fixed seed: reject only at p < 1e-6 (a correct sampler fails this
# with probability 1e-6).
P_MIN = 1e-6


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


TARGETS = {
    "laplace": Laplace(3, loc=[0.0, 1.0, -2.0], scale=[1.0, 0.5, 2.0]),
    "banana": Banana(a=1.5, b=0.7),
    "funnel": Funnel(5),
}


@pytest.mark.parametrize("name", TARGETS)
def test_score_equals_autograd(name):
    dens = TARGETS[name]
    x = torch.randn(100, dens.dim, generator=_gen(1), dtype=F64)
    torch.testing.assert_close(dens.score(x), autograd_score(dens.log_prob, x), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", NAMED)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_value_and_score_is_log_prob_and_score(name, dtype):
    """The fused pass MCMC kernels call (closed forms sharing their sub-expressions, the
    mixtures' precomputed constants) gives what ``log_prob`` and ``score`` give, to rounding:
    float64 to 1e-12, float32 to a few ulps of the terms (points up to 4 sd out, some far out in
    the mixtures' tails where the responsibilities are one-hot); ``inner_score``, the score
    alone, gives the same score (bit for bit, or to rounding for the mixtures whose components
    share one covariance: a different formula, ``GaussianMixture._tied_score``)."""
    from scorelab.densities.base import inner_score, value_and_score

    dens = make(name)
    x = 2 * torch.randn(300, dens.dim, generator=_gen(2), dtype=dtype)
    x[:5] *= 1e3
    lp, score = value_and_score(dens, x)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == F64 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(lp, dens.log_prob(x), **tol)
    torch.testing.assert_close(score, dens.score(x), **tol)
    ref = autograd_score(dens.log_prob, x.double()).to(dtype)
    torch.testing.assert_close(score, ref, **tol)
    # the score alone (HMC's inner leapfrog steps): the same numbers as with the value
    if getattr(dens, "_tied", False):
        torch.testing.assert_close(inner_score(dens, x), score, **tol)
    else:
        assert torch.equal(inner_score(dens, x), score)


def test_laplace_density_and_moments():
    lap = Laplace()  # exp(-sqrt(2)|x|)/sqrt(2): variance 1
    x = torch.linspace(-5, 5, 11, dtype=F64)[:, None]
    want = torch.exp(-math.sqrt(2) * x.abs()) / math.sqrt(2)
    torch.testing.assert_close(lap.log_prob(x).exp(), want[:, 0])
    s = TARGETS["laplace"].sample(N, generator=_gen(2), dtype=F64)
    assert_mean_cov(s, TARGETS["laplace"].loc, torch.diag(TARGETS["laplace"].scale ** 2))
    b = 0.5 / math.sqrt(2)
    assert scipy.stats.kstest(s[:, 1].numpy(), scipy.stats.laplace(1.0, b).cdf).pvalue > P_MIN


def test_banana_exact_sampling():
    ban = TARGETS["banana"]
    s = ban.sample(N, generator=_gen(3), dtype=F64)
    cov = torch.diag(torch.tensor([ban.a**2, 1 + 2 * ban.b**2 * ban.a**4], dtype=F64))
    assert_mean_cov(s, torch.zeros(2, dtype=F64), cov)
    # undo the twist: z2 = x2 - b (x1^2 - a^2) must be standard normal, independent of x1
    z2 = s[:, 1] - ban.b * (s[:, 0] ** 2 - ban.a**2)
    assert scipy.stats.kstest(z2.numpy(), "norm").pvalue > P_MIN
    assert scipy.stats.kstest((s[:, 0] / ban.a).numpy(), "norm").pvalue > P_MIN


def test_funnel_exact_sampling():
    fun = TARGETS["funnel"]
    s = fun.sample(N, generator=_gen(4), dtype=F64)
    v = s[:, 0]
    assert scipy.stats.kstest((v / 3).numpy(), "norm").pvalue > P_MIN
    # given v, x_i exp(-v/2) is N(0, 1) for every coordinate
    std = s[:, 1:] * torch.exp(-v / 2)[:, None]
    assert_mean_cov(std, torch.zeros(4, dtype=F64), torch.eye(4, dtype=F64))


def _grid(lo0, hi0, lo1, hi1, h):
    a0 = torch.arange(lo0, hi0 + h / 2, h, dtype=F64)
    a1 = torch.arange(lo1, hi1 + h / 2, h, dtype=F64)
    return torch.stack(torch.meshgrid(a0, a1, indexing="ij"), -1).reshape(-1, 2)


def test_banana_normalized_on_a_grid():
    """Riemann sum, h = 0.02: x1 in +-8 a (8 sd), x2 in [-10, 70] covers b x1^2 + 8 sd.

    The integrand is smooth and ~0 at the box edge, so the sum's error is far below 1e-8.
    """
    h = 0.02
    mass = Banana().log_prob(_grid(-8, 8, -10, 70, h)).exp().sum() * h**2
    assert abs(mass.item() - 1) < 1e-8


def test_funnel_normalized_on_a_grid():
    """Integrate in (v, u) with x = exp(v/2) u (Jacobian exp(v/2)), where the neck is not thin.

    v in +-20 (6.7 sd), u in +-10, h = 0.02: quadrature error below 1e-8.
    """
    h = 0.02
    vu = _grid(-20, 20, -10, 10, h)
    v, u = vu[:, 0], vu[:, 1]
    x = torch.stack([v, torch.exp(v / 2) * u], -1)
    mass = (Funnel(2).log_prob(x).exp() * torch.exp(v / 2)).sum() * h**2
    assert abs(mass.item() - 1) < 1e-8


def test_from_log_prob_scores_by_autograd():
    def log_p(x):
        return -0.5 * (x**2).sum(-1) - (x**4).sum(-1)

    dens = from_log_prob(log_p, dim=2)
    assert not dens.normalized
    x = torch.randn(10, 2, generator=_gen(5), dtype=F64)
    torch.testing.assert_close(dens.score(x), -x - 4 * x**3)
    with pytest.raises(NotImplementedError, match=r"scorelab\.mcmc\.sample"):
        dens.sample(3)


def test_from_log_prob_checks_output_shape():
    dens = from_log_prob(lambda x: x.sum(), dim=2)
    with pytest.raises(ValueError, match=r"one value per point, shape \(4,\)"):
        dens.log_prob(torch.zeros(4, 2))


@pytest.mark.parametrize("name", NAMED)
def test_named_densities_build_and_sample_or_score(name):
    dens = make(name)
    x = torch.zeros(3, dens.dim)
    assert dens.log_prob(x).shape == (3,) and dens.score(x).shape == (3, dens.dim)
    assert dens.sample(5, generator=_gen()).shape == (5, dens.dim)


def test_named_gaussian_condition_number():
    g = make("gaussian", dim=4, condition=100.0)
    ev = torch.linalg.eigvalsh(g.cov)
    assert ev.max() / ev.min() == pytest.approx(100.0)
