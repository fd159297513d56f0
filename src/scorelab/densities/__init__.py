"""Known densities on R^d: log-density, score, exact sampling, exact smoothing and denoiser.

>>> from scorelab.densities import GaussianMixture
>>> gm = GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], 1.0)
>>> gm.smoothed(2.0).score(x)        # exact score of X + 2 N
>>> gm.denoise(x, sigma)             # exact E[X | X + sigma N = x]
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch

from scorelab._utils import check_positive, scalars
from scorelab.densities.base import (
    Density,
    FunctionDensity,
    ScoreDensity,
    autograd_score,
    from_denoiser,
    from_log_prob,
    value_and_score,
)
from scorelab.densities.gaussian import Gaussian, GaussianMixture
from scorelab.densities.targets import Banana, Funnel, Laplace
from scorelab.tweedie import (
    denoised_from_score,
    denoiser_from_score,
    score_from_denoised,
    score_from_denoiser,
)


def _two_modes(dim: int = 2, weight: float = 0.2, distance: float = 5.0) -> GaussianMixture:
    """The classic pitfall: ``w N(-distance 1, I) + (1 - w) N(distance 1, I)``."""
    return GaussianMixture([weight, 1 - weight], [[-distance] * dim, [distance] * dim], 1.0)


def _ring(dim: int = 2, modes: int = 8, radius: float = 4.0, std: float = 0.5) -> GaussianMixture:
    """``modes`` equal isotropic Gaussians on a circle in the first two coordinates."""
    if dim < 2:
        raise ValueError(f"dim must be >= 2 for the ring; got {dim}")
    means = [
        [radius * math.cos(2 * math.pi * i / modes), radius * math.sin(2 * math.pi * i / modes)]
        + [0.0] * (dim - 2)
        for i in range(modes)
    ]
    return GaussianMixture([1 / modes] * modes, means, std**2)


def _gaussian(dim: int = 2, condition: float = 1.0) -> Gaussian:
    """Zero-mean Gaussian, variances log-spaced from 1 to ``condition`` (its condition number)."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1; got {dim}")
    check_positive(condition, "condition")
    return Gaussian(torch.zeros(dim), torch.logspace(0, math.log10(condition), dim))


# Named targets for the command line: name -> (factory, one-line description).
NAMED: dict[str, tuple[Callable[..., Density], str]] = {
    "gaussian": (_gaussian, "zero-mean Gaussian, variances 1..condition (dim, condition)"),
    "two-modes": (_two_modes, "0.2 N(-5, I) + 0.8 N(5, I) (dim, weight, distance)"),
    "ring": (_ring, "equal Gaussians on a circle (dim, modes, radius, std)"),
    "laplace": (Laplace, "exp(-sqrt(2)|x|)/sqrt(2) per coordinate (dim, loc, scale)"),
    "banana": (Banana, "Haario's twisted Gaussian on R^2 (a, b)"),
    "funnel": (Funnel, "Neal's funnel (dim, scale)"),
}


def make(name: str, **params: float) -> Density:
    """Build a named density (see ``NAMED``) with keyword parameters."""
    if name not in NAMED:
        raise ValueError(f"unknown density {name!r}; choose one of {', '.join(NAMED)}")
    factory = NAMED[name][0]
    accepted = inspect.signature(factory).parameters
    unknown = [key for key in params if key not in accepted]
    if unknown:
        listed = ", ".join(f"{p.name} (default {p.default})" for p in accepted.values())
        raise ValueError(
            f"density {name!r} has no parameter {', '.join(map(repr, unknown))}; its "
            f"parameters are {listed or 'none'}"
        )
    try:
        return factory(**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for density {name!r}: {err}") from err


__all__ = [
    "NAMED",
    "Banana",
    "Density",
    "FunctionDensity",
    "Funnel",
    "Gaussian",
    "GaussianMixture",
    "Laplace",
    "ScoreDensity",
    "autograd_score",
    "denoised_from_score",
    "denoiser_from_score",
    "from_denoiser",
    "from_log_prob",
    "make",
    "scalars",
    "score_from_denoised",
    "score_from_denoiser",
    "value_and_score",
]
