"""Tweedie's formula: a denoiser and a score are one object.

For ``Y = X + sigma N``: ``E[X | Y = y] = y + sigma^2 grad log p_sigma(y)`` (Robbins 1956,
Efron 2011), so ``score(x, sigma) = (D(x, sigma) - x) / sigma^2``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from scorelab._utils import append_dims

Denoiser = Callable[[Tensor, Tensor], Tensor]
ScoreFn = Callable[[Tensor, Tensor], Tensor]


def _sigma_like(sigma: float | Tensor, x: Tensor) -> Tensor:
    """``sigma`` (scalar or ``[batch]``) shaped to broadcast over ``x`` ``[batch, *event]``."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return append_dims(s, x.ndim) if s.ndim else s


def score_from_denoised(x: Tensor, denoised: Tensor, sigma: float | Tensor) -> Tensor:
    """``s = (D(x, sigma) - x) / sigma^2`` (Tweedie)."""
    return (denoised - x) / _sigma_like(sigma, x) ** 2


def denoised_from_score(x: Tensor, score: Tensor, sigma: float | Tensor) -> Tensor:
    """``D = x + sigma^2 s(x, sigma)`` (Tweedie)."""
    return x + _sigma_like(sigma, x) ** 2 * score


def score_from_denoiser(denoiser: Denoiser) -> ScoreFn:
    """Wrap a denoiser ``D(x, sigma)`` as a score function ``s(x, sigma)``."""

    def score(x: Tensor, sigma: Tensor) -> Tensor:
        return score_from_denoised(x, denoiser(x, sigma), sigma)

    return score


def denoiser_from_score(score: ScoreFn) -> Denoiser:
    """Wrap a score function ``s(x, sigma)`` as a denoiser ``D(x, sigma)``."""

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        return denoised_from_score(x, score(x, sigma), sigma)

    return denoiser
