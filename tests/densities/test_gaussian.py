"""Gaussians and mixtures: scores, normalization, sampling, exact smoothing and denoising."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from scorelab.densities import Gaussian, GaussianMixture, autograd_score, score_from_denoiser
from tests.conftest import assert_mean_cov

F64 = torch.float64


def _spd(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=F64)
    return a @ a.T / d + 0.3 * torch.eye(d, dtype=F64)


def _gaussians():
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    return {
        "iso": Gaussian(mean, 2.0),
        "diag": Gaussian(mean, torch.tensor([0.5, 2.0, 4.0])),
        "full": Gaussian(mean, _spd(3, 0)),
    }


def _mixtures():
    w = [0.2, 0.5, 0.3]
    mu = [[-4.0, 0.0, 1.0], [3.0, 3.0, -1.0], [0.0, -3.0, 2.0]]
    return {
        "shared": GaussianMixture(w, mu, 0.7),
        "iso": GaussianMixture(w, mu, [0.5, 1.0, 2.0]),
        "diag": GaussianMixture(w, mu, [[0.5, 1.0, 2.0], [1.0, 1.0, 0.2], [3.0, 0.4, 1.0]]),
        "full": GaussianMixture(w, mu, torch.stack([_spd(3, s) for s in range(3)])),
    }


DENSITIES = {**{f"gauss-{k}": v for k, v in _gaussians().items()}, **_mixtures()}


def _points(n=64, d=3, seed=1, scale=3.0):
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("name", DENSITIES)
def test_analytic_score_equals_autograd(name):
    dens, x = DENSITIES[name], _points()
    torch.testing.assert_close(dens.score(x), autograd_score(dens.log_prob, x), rtol=1e-10, atol=0)


@pytest.mark.parametrize("name", DENSITIES)
def test_smoothed_score_equals_autograd_per_point_sigma(name):
    dens, x = DENSITIES[name], _points()
    sigma = torch.logspace(-2, 1, x.shape[0], dtype=F64)
    got = dens.smoothed_score(x, sigma)
    want = autograd_score(lambda y: dens.smoothed_log_prob(y, sigma), x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", DENSITIES)
def test_log_prob_matches_scipy(name):
    dens, x = DENSITIES[name], _points(n=16)
    covs, means, w = dens.component_covs, dens.component_means, dens.weights
    for sigma in (None, 0.5, 3.0):
        s2 = 0.0 if sigma is None else sigma**2
        want = sum(
            w[k].item()
            * scipy.stats.multivariate_normal(
                means[k].numpy(), covs[k].numpy() + s2 * np.eye(3)
            ).pdf(x.numpy())
            for k in range(len(w))
        )
        got = dens.log_prob(x) if sigma is None else dens.smoothed(sigma).log_prob(x)
        np.testing.assert_allclose(got.exp().numpy(), want, rtol=1e-10)


@pytest.mark.parametrize("name", DENSITIES)
def test_smoothed_object_agrees_with_per_point_methods(name):
    dens, x = DENSITIES[name], _points()
    sm = dens.smoothed(0.8)
    torch.testing.assert_close(sm.log_prob(x), dens.smoothed_log_prob(x, 0.8))
    torch.testing.assert_close(sm.score(x), dens.smoothed_score(x, 0.8))
    # a [batch] sigma of equal entries is the same as the scalar
    torch.testing.assert_close(
        dens.denoise(x, torch.full((64,), 0.8, dtype=F64)), dens.denoise(x, 0.8)
    )
    assert type(sm) is type(dens) and sm.cov_type == dens.cov_type


@pytest.mark.parametrize("name", DENSITIES)
def test_denoiser_is_tweedie(name):
    dens, x = DENSITIES[name], _points()
    for sigma in (1e-2, 0.5, 5.0):
        d = dens.denoise(x, sigma)
        torch.testing.assert_close(d, x + sigma**2 * dens.smoothed_score(x, sigma))
        torch.testing.assert_close(
            score_from_denoiser(dens.denoise)(x, sigma), dens.smoothed_score(x, sigma)
        )


def test_gaussian_denoiser_closed_form():
    """E[X | Y=y] = mu + C (C + sigma^2 I)^{-1} (y - mu) for a full-covariance Gaussian."""
    g = _gaussians()["full"]
    x = _points()
    for sigma in (1e-3, 0.3, 1.0, 1e3):
        a = g.cov @ torch.linalg.inv(g.cov + sigma**2 * torch.eye(3, dtype=F64))
        want = g.mean + (x - g.mean) @ a.T
        torch.testing.assert_close(g.denoise(x, sigma), want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["gauss-full", "diag", "full"])
def test_sample_moments(name):
    dens = DENSITIES[name]
    x = dens.sample(200_000, generator=torch.Generator().manual_seed(3), dtype=F64)
    assert x.shape == (200_000, 3) and x.dtype == F64
    assert_mean_cov(x, dens.mean, dens.cov)


def test_mixture_weights_in_samples():
    """Counts per mode are Binomial(n, w): tolerance 5 binomial standard deviations."""
    gm = GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], 1.0)
    n = 100_000
    x = gm.sample(n, generator=torch.Generator().manual_seed(0))
    frac = (x[:, 0] < 0).double().mean().item()
    assert abs(frac - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)


def test_sampling_is_reproducible_and_float32_by_default():
    gm = _mixtures()["full"]
    a = gm.sample(50, generator=torch.Generator().manual_seed(7))
    b = gm.sample(50, generator=torch.Generator().manual_seed(7))
    assert a.dtype == torch.float32 and torch.equal(a, b)
    assert gm.sample(0).shape == (0, 3)


def test_smoothed_2d_mixture_integrates_to_one_and_equals_convolution():
    """p_sigma = p * N(0, sigma^2 I), checked by Riemann sums on a grid.

    The trapezoid rule on a smooth integrand decaying to ~0 at the box edge converges faster
    than any power of h: for a Gaussian of width s its error is ~2 exp(-2 pi^2 s^2 / h^2). The
    narrowest width here is 0.3 and h = 0.05, so the quadrature error is far below 1e-9; the
    box [-20, 20]^2 is 8 standard deviations past every mode, so tails are below 1e-14.
    """
    cov1 = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=F64)
    cov2 = torch.tensor([[0.09, 0.0], [0.0, 0.4]], dtype=F64)
    gm = GaussianMixture([0.3, 0.7], [[-2.0, 1.0], [1.5, -1.0]], torch.stack([cov1, cov2]))
    h = 0.05
    ax = torch.arange(-20, 20 + h / 2, h, dtype=F64)
    grid = torch.stack(torch.meshgrid(ax, ax, indexing="ij"), -1).reshape(-1, 2)
    p = gm.log_prob(grid).exp()
    y = _points(n=10, d=2, seed=5, scale=1.5)
    for sigma in (0.3, 1.0, 2.0):
        mass = gm.smoothed(sigma).log_prob(grid).exp().sum() * h**2
        assert abs(mass.item() - 1) < 1e-9
        kernel = torch.exp(-((y[:, None] - grid) ** 2).sum(-1) / (2 * sigma**2)) / (
            2 * math.pi * sigma**2
        )
        conv = (kernel * p).sum(-1) * h**2
        torch.testing.assert_close(gm.smoothed_log_prob(y, sigma).exp(), conv, rtol=1e-9, atol=0)


def test_denoiser_equals_posterior_mean_by_quadrature_1d():
    """E[X | Y=y] = int x p(x) N(y; x, s^2) dx / int p(x) N(y; x, s^2) dx on a fine grid.

    Grid step 2e-4 against the narrowest integrand width (sigma = 0.01): the quadrature
    error ~exp(-2 pi^2 (50)^2) vanishes; relative tolerance 1e-8 covers rounding.
    """
    gm = GaussianMixture([0.25, 0.5, 0.25], [[-3.0], [0.5], [4.0]], [0.2, 1.0, 0.05])
    h = 2e-4
    xs = torch.arange(-10, 10 + h / 2, h, dtype=F64)
    p = gm.log_prob(xs[:, None]).exp()
    ys = torch.tensor([-4.0, -1.0, 0.0, 0.3, 2.2, 4.1, 6.0], dtype=F64)
    for sigma in (0.01, 0.1, 1.0, 3.0):
        like = torch.exp(-((ys[:, None] - xs) ** 2) / (2 * sigma**2))
        want = (like * p * xs).sum(-1) / (like * p).sum(-1)
        got = gm.denoise(ys[:, None], sigma)[:, 0]
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("sigma", [1e-3, 1e-2, 1.0, 1e2, 1e3])
def test_stable_across_sigma_and_dtype(sigma):
    """float32 agrees with float64 from sigma = 1e-3 to 1e3, and far-away points stay finite."""
    gm = _mixtures()["full"]
    x64 = torch.cat([_points(n=32, scale=3.0), _points(n=8, seed=2, scale=1e3)])
    ref = gm.denoise(x64, sigma)
    got = gm.denoise(x64.float(), sigma)
    assert torch.isfinite(got).all() and torch.isfinite(gm.smoothed_score(x64.float(), sigma)).all()
    assert torch.isfinite(gm.smoothed_log_prob(x64.float(), sigma)).all()
    # float32 rounding: a few ulps of the largest magnitude involved (|x| up to ~4e3)
    scale = 1 + x64.abs().amax(-1, keepdim=True)
    assert ((got.double() - ref).abs() / scale).max() < 1e-5
    ref_s = gm.smoothed_score(x64, sigma)
    got_s = gm.smoothed_score(x64.float(), sigma).double()
    assert ((got_s - ref_s).abs() / (ref_s.abs() + 1e-3 / sigma**2)).max() < 1e-3


def test_far_point_score_is_the_nearest_component():
    """Far from every mode the responsibility of the nearest is 1 (log-sum-exp, no 0/0)."""
    gm = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], 1.0)
    x = torch.tensor([[1e4], [-1e4]])
    torch.testing.assert_close(gm.score(x), torch.tensor([[-(1e4 - 1)], [1e4 - 1]]))
    assert torch.isfinite(gm.log_prob(x)).all()


def test_mcmc_fast_paths_where_every_component_underflows():
    """The MCMC paths (``value_and_score``, ``inner_score``) at a point so far out that every
    component's log-term is -inf in float32 (|z|^2 overflows): the nearest component takes
    all the weight (a finite score) instead of 0/0, next to an ordinary point in one batch."""
    from scorelab.densities.base import inner_score, value_and_score

    gm = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [3.0, 0.0]], 1.0)
    x = torch.tensor([[-3e20, 0.0], [0.5, 0.0]])
    lp, score = value_and_score(gm, x)
    assert lp[0] == -math.inf and torch.isfinite(lp[1])
    torch.testing.assert_close(score[0], torch.tensor([3e20, 0.0]))  # -(x - mu_0) / 1
    torch.testing.assert_close(score[1], gm.score(x[1:])[0])
    torch.testing.assert_close(inner_score(gm, x), score)  # the tied form: no underflow


def test_leading_batch_dims():
    g = _gaussians()["full"]
    x = _points(n=12).reshape(3, 4, 3)
    assert g.log_prob(x).shape == (3, 4)
    assert g.denoise(x, torch.ones(3, 4, dtype=F64)).shape == (3, 4, 3)
    torch.testing.assert_close(g.score(x).reshape(12, 3), g.score(x.reshape(12, 3)))


@pytest.mark.parametrize("cov", ["isotropic", "diagonal", "full"])
def test_tied_inner_score_is_the_score(cov):
    """Components sharing one covariance take the tied form of the score in HMC's inner
    leapfrog steps (logits linear in x, two matrix products): the per-component form's score
    to float64 rounding, for a scalar, a diagonal or a full shared covariance (given K times),
    with leading batch dimensions; the smoothed density stays tied."""
    from scorelab.densities.base import inner_score, value_and_score

    g = torch.Generator().manual_seed(3)
    means = 3 * torch.randn(4, 3, generator=g, dtype=F64)
    a = torch.randn(3, 3, generator=g, dtype=F64)
    shared = {
        "isotropic": torch.tensor(0.7, dtype=F64),
        "diagonal": torch.tensor([0.5, 1.0, 2.5], dtype=F64).expand(4, 3),
        "full": (a @ a.T + 0.5 * torch.eye(3, dtype=F64)).expand(4, 3, 3),
    }[cov]
    gm = GaussianMixture([0.1, 0.2, 0.3, 0.4], means, shared)
    x = 4 * torch.randn(5, 6, 3, generator=g, dtype=F64)
    for dens in (gm, gm.smoothed(0.3)):
        assert dens._tied
        score = inner_score(dens, x)
        assert score.shape == (5, 6, 3)
        torch.testing.assert_close(score, value_and_score(dens, x)[1], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(score, dens.score(x), rtol=1e-12, atol=1e-12)
    # components with their own covariances: the per-component form
    assert not GaussianMixture([0.5, 0.5], means[:2], torch.tensor([1.0, 2.0]))._tied


def test_tied_inner_score_keeps_its_digits_far_from_the_origin():
    """Two unit components 1 apart, 1000 from the origin, in float32: uncentred, the logits
    would be ~5e5 (an ulp of 0.03) and the score off by 3e-3 (measured; 3x this test's
    bound); centred on the mixture's mean they are O(1), and the score is the float64 one to
    a few ulps of |x|."""
    from scorelab.densities.base import inner_score

    gm = GaussianMixture([0.5, 0.5], [[1000.0, 0.0], [1001.0, 0.0]], 1.0)
    x = torch.tensor([[1000.5, 0.0], [1000.2, 1.0], [1001.3, -0.5], [999.0, 2.0]])
    want = gm.score(x.double())
    got = inner_score(gm, x).double()
    assert ((got - want).abs() <= 8 * torch.finfo(torch.float32).eps * 1001).all(), got - want
