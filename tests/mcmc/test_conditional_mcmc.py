"""Conditional MCMC: the runner samples a class-conditional score given only as a denoiser."""

from __future__ import annotations

import math

import pytest
import torch

from scorelab import mcmc
from scorelab.densities import GaussianMixture, from_denoiser

GM = GaussianMixture([0.5, 0.5], [[-3.0, 0.0], [3.0, 0.0]], [[[1.0, 0.5], [0.5, 1.0]],
                                                             [[0.5, 0.0], [0.0, 2.0]]])  # fmt: skip


def test_ula_on_a_class_conditional_denoiser_samples_that_class():
    """The exact conditional denoiser at sigma = 0.05 has score -(C_k + s^2 I)^-1 (x - mu_k):
    a Gaussian, which ULA at step h samples with covariance (C + s^2 I)(I - h/2 (C + s^2 I)^-1)^-1
    (the known ULA bias, exact for Gaussians). Mean and covariance within 5 standard errors,
    with the effective sample size of 64 chains x 3000 steps."""
    sigma, h = 0.05, 0.05
    target = from_denoiser(GM.denoise, sigma, cond=1, dim=2)
    res = mcmc.sample(target, "ula", chains=64, steps=3000, warmup=300, step_size=h,
                      dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                      progress=False)  # fmt: skip
    x = res.samples.reshape(-1, 2)
    cov = GM.component_covs[1] + sigma**2 * torch.eye(2, dtype=torch.float64)
    expected = cov @ torch.linalg.inv(
        torch.eye(2, dtype=torch.float64) - h / 2 * torch.linalg.inv(cov)
    )
    ess = mcmc.ess(res.samples).min().item()
    se_mean = expected.diagonal().sqrt() / math.sqrt(ess)
    assert ((x.mean(0) - GM.component_means[1]).abs() < 5 * se_mean).all()
    se_var = expected.diagonal() * math.sqrt(2 / ess)
    assert ((x.var(0) - expected.diagonal()).abs() < 5 * se_var).all()
    assert (x[:, 0] > 0).double().mean() > 0.99  # the other class (x0 ~ -3) is never visited


def test_score_only_targets_refuse_kernels_that_need_log_p():
    target = from_denoiser(GM.denoise, 0.1, cond=0, dim=2)
    with pytest.raises(ValueError, match="no log-density: use kernel 'ula'"):
        mcmc.sample(target, "mala", chains=2, steps=10, progress=False)
    with pytest.raises(ValueError, match="fixed step_size"):
        mcmc.sample(target, "ula", chains=2, steps=10, progress=False)
    with pytest.raises(ValueError, match="pass dim="):
        from_denoiser(GM.denoise, 0.1)
