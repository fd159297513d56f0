"""Bad input fails early with a ValueError naming the argument, the problem and the fix."""

from __future__ import annotations

import pytest
import torch

from scorelab.densities import Funnel, Gaussian, GaussianMixture, Laplace, make


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Gaussian([[0.0, 0.0]]), r"mean must be a non-empty 1-D \[d\] array"),
        (lambda: Gaussian([0.0, 0.0], [1.0, 2.0, 3.0]), r"cov has shape \(3,\).*\[2\] \(diag"),
        (lambda: Gaussian([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]]), r"cov is not symmetric"),
        (lambda: Gaussian([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]]), r"cov is not positive definite"),
        (lambda: Gaussian([0.0, 0.0], -1.0), r"cov \(variances\) must be finite and > 0"),
        (lambda: Gaussian([0.0, float("nan")]), r"mean has 1 non-finite value"),
        (lambda: Gaussian("abc"), r"mean must be a number or array"),
        (lambda: GaussianMixture([0.5, -0.5], [[0.0], [1.0]]), r"weights\[1\] = -0.5"),
        (lambda: GaussianMixture([0.5, 0.6], [[0.0], [1.0]]), r"weights sum to 1.1, not 1"),
        (lambda: GaussianMixture([0.5, 0.5], [[0.0, 1.0]]), r"means has shape \(1, 2\)"),
        (lambda: GaussianMixture([0.5, 0.5], [[0.0], [1.0]], [1.0, 1.0, 1.0]), r"covs has shape"),
        (
            lambda: GaussianMixture([0.5, 0.5], [[0.0, 0], [1, 1]], [torch.eye(2), -torch.eye(2)]),
            r"covs\[1\] is not positive definite",
        ),
        (lambda: Laplace(2, scale=0.0), r"scale must be finite and > 0"),
        (lambda: Laplace(0), r"dim must be a positive int"),
        (lambda: Funnel(1), r"dim must be >= 2"),
        (lambda: make("nope"), r"unknown density 'nope'; choose one of gaussian"),
        (
            lambda: make("banana", dim=3),
            r"density 'banana' has no parameter 'dim'; its parameters are a \(default 1.0\), b ",
        ),
    ],
)
def test_constructor_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_point_and_sigma_errors():
    gm = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"x has shape \(4, 3\) but the density is on R\^2"):
        gm.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="x must be a floating tensor"):
        gm.score(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"sigma must be finite and > 0; got 0.0"):
        gm.denoise(torch.zeros(4, 2), 0.0)
    with pytest.raises(ValueError, match=r"sigma must be finite and > 0; got -1.0"):
        gm.smoothed_score(torch.zeros(2, 2), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"sigma has shape \(3,\); expected a scalar or one value"):
        gm.denoise(torch.zeros(4, 2), torch.ones(3))
    with pytest.raises(ValueError, match="sigma must be a scalar for smoothed"):
        gm.smoothed(torch.ones(2))
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        gm.sample(-1)
