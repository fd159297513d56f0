"""The probability-flow likelihood against exact log-densities of smoothed mixtures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scorelab.densities import Gaussian, GaussianMixture
from scorelab.diffusion import log_likelihood

F64 = torch.float64
GM = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]],
                     [[[0.5, 0.2], [0.2, 0.4]], [[0.3, 0.0], [0.0, 0.8]]])  # fmt: skip


def _x(n=8, seed=0):
    return GM.sample(n, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_exact_divergence_with_exact_prior_matches_to_ode_tolerance():
    """With the exact p_{sigma_max} as prior only the ODE error remains (rtol = atol = 1e-7
    gave 4e-7 when written); 1e-5 nats is the stated tolerance."""
    x = _x()
    ll = log_likelihood(GM, x, sigma_max=80.0, rtol=1e-7, atol=1e-7,
                        prior=lambda y: GM.smoothed_log_prob(y, 80.0))  # fmt: skip
    torch.testing.assert_close(ll, GM.smoothed_log_prob(x, 0.002), rtol=0, atol=1e-5)


def test_class_conditional_likelihood_is_each_components_density():
    """``cond`` gives log p(x | c): for a mixture whose label c picks component c, the
    component's Gaussian smoothed to sigma_min, per example (exact prior at sigma_max, so only
    the ODE error remains, as above); a wrong label gives another density."""
    x = _x(6)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    covs = GM.component_covs.to(F64)

    def component(y, sigma, c):
        cov = covs[c] + sigma**2 * torch.eye(2, dtype=F64)
        dist = torch.distributions.MultivariateNormal(GM.component_means.to(F64)[c], cov)
        return dist.log_prob(y)

    ll = log_likelihood(GM, x, sigma_max=80.0, rtol=1e-7, atol=1e-7, cond=labels,
                        prior=lambda y: component(y, 80.0, labels))  # fmt: skip
    torch.testing.assert_close(ll, component(x, 0.002, labels), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="one class label per example"):
        log_likelihood(GM, x, cond=labels[:3])


def test_default_gaussian_prior_error_is_of_order_mean_over_sigma_max():
    x = _x()
    ll = log_likelihood(GM, x, sigma_max=500.0)
    bound = 3 * GM.mean.norm().item() / 500 + 2 * GM.cov.trace().item() / (2 * 500**2) + 1e-4
    assert (ll - GM.smoothed_log_prob(x, 0.002)).abs().max() < bound


def test_a_gaussian_in_closed_form():
    g = Gaussian([0.3], 2.0)
    x = torch.tensor([[-2.0], [0.0], [1.0], [4.0]], dtype=F64)
    ll = log_likelihood(g, x, sigma_min=0.01, sigma_max=100.0, rtol=1e-7, atol=1e-7,
                        prior=lambda y: g.smoothed_log_prob(y, 100.0))  # fmt: skip
    want = -0.5 * (x[:, 0] - 0.3) ** 2 / (2 + 1e-4) - 0.5 * math.log(2 * math.pi * (2 + 1e-4))
    torch.testing.assert_close(ll, want, rtol=0, atol=1e-5)


def test_hutchinson_estimator_is_unbiased():
    """One Rademacher probe per example: averaged over 64 independent probes of the same point,
    the estimate is within 5 standard errors (estimated from the 64 values) of the exact one."""
    x = _x(1).expand(64, 2).clone()
    prior = lambda y: GM.smoothed_log_prob(y, 80.0)  # noqa: E731
    ll = log_likelihood(GM, x, exact=False, prior=prior, generator=torch.Generator().manual_seed(3))
    exact = GM.smoothed_log_prob(x[:1], 0.002)
    se = ll.std() / math.sqrt(64)
    assert ll.std() > 0  # the probes really vary
    assert (ll.mean() - exact).abs() < 5 * se + 1e-4


def test_bad_sigmas():
    with pytest.raises(ValueError, match="sigma_max must exceed sigma_min"):
        log_likelihood(GM, _x(), sigma_min=1.0, sigma_max=0.5)


def test_bits_per_dim_matches_the_closed_form_dequantized_bound_and_bounds_the_discrete_nll():
    """For N(0, s^2 I) in d = 2 and uniform dequantization with bin width w, the expected bound
    is closed-form: E_u log N(x + w (u - 1/2)) = log N(x) - d w^2 / (24 s^2) (the variance of
    w (u - 1/2) is w^2 / 12). The estimate averages n = 400 draws of u, so the tolerance is
    5 standard errors of that mean, plus the ODE tolerance. The bound must also exceed the exact
    discrete -log2 P(x), with P(x) the Gaussian mass of the bin."""
    from scipy.stats import norm

    from scorelab.diffusion import bits_per_dim

    s, w, d, sigma_min = 1.5, 0.5, 2, 1e-3
    s_eff = math.sqrt(s**2 + sigma_min**2)  # the flow gives p smoothed by sigma_min
    g = Gaussian(torch.zeros(d, dtype=F64), s**2)  # cov is a variance
    x = torch.tensor([[0.5, -1.0]], dtype=F64).repeat(400, 1)
    bpd = bits_per_dim(g, x, w, sigma_min=sigma_min, sigma_max=50.0, rtol=1e-7, atol=1e-7,
                       prior=lambda y: g.smoothed_log_prob(y, 50.0),
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    log_n = Gaussian(torch.zeros(d, dtype=F64), s_eff**2).log_prob(x[:1]).item()
    expected = -(log_n - d * w**2 / (24 * s_eff**2) + d * math.log(w)) / (d * math.log(2))
    se = bpd.std().item() / math.sqrt(len(bpd))
    assert abs(bpd.mean().item() - expected) < 5 * se + 1e-5
    x0 = x[0].numpy()
    mass = norm.cdf((x0 + w / 2) / s) - norm.cdf((x0 - w / 2) / s)
    exact_discrete = -np.log2(mass).sum() / d
    assert expected > exact_discrete  # Jensen: the dequantized bound is above the discrete NLL
    assert bpd.mean().item() > exact_discrete - 5 * se


def test_bits_per_dim_rejects_a_bad_bin_width():
    from scorelab.diffusion import bits_per_dim

    with pytest.raises(ValueError, match="bin_width"):
        bits_per_dim(GM, _x(), 0.0)
