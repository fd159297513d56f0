"""Bayesian posteriors over a data set, with the minibatch score estimate SGLD needs."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from scorelab._utils import check_finite
from scorelab.densities.base import Density, autograd_score


class Posterior(Density):
    """``log p(theta | data) = log_prior(theta) + sum_i log_likelihood(theta, data_i) + const``.

    Args:
        log_prior: ``theta [chains, dim] -> [chains]``.
        log_likelihood: ``(theta [chains, dim], batch [chains or 1, B, ...]) -> [chains, B]``,
            one term per data point; the full data set arrives as ``data[None]`` and
            minibatches as one batch per chain, so write it with broadcasting.
        data: ``[N, ...]`` tensor of observations.
        dim: dimension of ``theta``.
        batch_size: minibatch size ``B`` for ``minibatch_score``.

    ``minibatch_score`` is the unbiased estimate
    ``grad log_prior + (N / B) sum_{i in batch} grad log_likelihood(theta, data_i)``
    (Welling & Teh 2011, eq. 4), with an independent minibatch per chain (drawn with
    replacement) so that chains stay independent; ``log_prob`` and ``score`` use all the data.
    """

    normalized = False

    def __init__(
        self,
        log_prior: Callable[[Tensor], Tensor],
        log_likelihood: Callable[[Tensor, Tensor], Tensor],
        data: Tensor,
        dim: int,
        batch_size: int = 32,
    ):
        if not isinstance(data, Tensor) or data.ndim == 0 or data.shape[0] == 0:
            raise ValueError("data must be a non-empty tensor [N, ...] of observations")
        check_finite(data, "data")
        if not isinstance(batch_size, int) or not 1 <= batch_size:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        self.log_prior, self.log_likelihood, self.data = log_prior, log_likelihood, data
        self.dim, self.batch_size = dim, min(batch_size, data.shape[0])

    def _terms(self, theta: Tensor, batch: Tensor, scale: float) -> Tensor:
        return self.log_prior(theta) + scale * self.log_likelihood(theta, batch.to(theta)).sum(-1)

    def _log_prob(self, x: Tensor) -> Tensor:
        return self._terms(x, self.data[None], 1.0)

    def minibatch_score(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Unbiased score estimate from ``batch_size`` points per chain (with replacement)."""
        n, chains = self.data.shape[0], x.shape[0]
        gen_dev = generator.device if generator is not None else "cpu"
        idx = torch.randint(n, (chains, self.batch_size), generator=generator, device=gen_dev)
        batch = self.data[idx.to(self.data.device)]  # [chains, B, ...]
        scale = n / self.batch_size
        return autograd_score(lambda theta: self._terms(theta, batch, scale), x)
