"""Shared test helpers: statistical tolerances derived from the sample size."""

from __future__ import annotations

import torch

# The suite runs many small-tensor loops; one intra-op thread is faster for those and keeps
# timings stable when other processes share the 2 cores.
torch.set_num_threads(1)

# A z-score of 5 is exceeded by chance with probability ~6e-7 per check, so a fixed-seed test
# with a few dozen such checks fails only if the code is wrong.
Z = 5.0


def assert_mean_cov(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, z: float = Z):
    """Check sample mean and covariance against the truth with tolerances from n.

    The standard error of each sample-mean entry is ``sd_i / sqrt(n)``; that of each covariance
    entry is the standard deviation of ``(x_i - m_i)(x_j - m_j)`` over ``sqrt(n)``, both
    estimated from the samples themselves (valid for any law with finite fourth moments).
    """
    x = samples.double()
    n = x.shape[0]
    m = x.mean(0)
    se_mean = x.std(0) / n**0.5
    assert ((m - mean.double()).abs() <= z * se_mean).all(), (m, mean, se_mean)
    c = x - mean.double()
    prods = c[:, :, None] * c[:, None, :]  # [n, d, d]
    se_cov = prods.std(0) / n**0.5
    err = (prods.mean(0) - cov.double()).abs()
    assert (err <= z * se_cov).all(), (prods.mean(0), cov, se_cov)
