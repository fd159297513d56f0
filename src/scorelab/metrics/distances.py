"""Distances between sample sets."""

from __future__ import annotations

import torch
from torch import Tensor

from scorelab._utils import randn


def _flat_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same event size; got {x.shape[1]} and {y.shape[1]} features"
        )
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("x and y need at least 2 samples each")
    return x, y.to(x)


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    *,
    n_projections: int = 256,
    p: int = 2,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sliced Wasserstein-p distance (Rabin et al. 2011; Bonneel et al. 2015):
    ``(E_theta W_p^p(theta^T x, theta^T y))^(1/p)`` over random unit directions ``theta``.

    Each 1-D distance compares quantile functions at ``max(n, m)`` evenly spaced levels, so the
    two sets may differ in size. Images are flattened.
    """
    x, y = _flat_pair(x, y)
    theta = randn((x.shape[1], n_projections), generator, x.dtype, x.device)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, py = torch.sort(x @ theta, dim=0).values, torch.sort(y @ theta, dim=0).values
    k = max(px.shape[0], py.shape[0])
    levels = (torch.arange(k, dtype=x.dtype, device=x.device) + 0.5) / k

    def quantiles(sorted_proj: Tensor) -> Tensor:
        idx = (levels * sorted_proj.shape[0]).floor().long().clamp(max=sorted_proj.shape[0] - 1)
        return sorted_proj[idx]

    return ((quantiles(px) - quantiles(py)).abs() ** p).mean() ** (1 / p)


def nearest_neighbor_distances(x: Tensor, reference: Tensor, chunk: int = 4096) -> Tensor:
    """Euclidean distance from each row of ``x`` to its nearest row of ``reference``, ``[n]``."""
    x, reference = _flat_pair(x, reference)
    return torch.cat([torch.cdist(part, reference).amin(-1) for part in x.split(chunk)])


def memorization_ratio(samples: Tensor, train: Tensor, heldout: Tensor) -> Tensor:
    """Median nearest-training-neighbour distance of generated samples over that of held-out
    data: about 1 when the model generalizes as well as fresh data, far below 1 when it copies
    its training set (cf. Carlini et al. 2023; Somepalli et al. 2023)."""
    d_gen = nearest_neighbor_distances(samples, train).median()
    d_held = nearest_neighbor_distances(heldout, train).median()
    return d_gen / d_held


def psnr(x: Tensor, reference: Tensor, data_range: float) -> Tensor:
    """Peak signal-to-noise ratio ``10 log10(range^2 / MSE)`` per example, ``[n]``."""
    x, reference = _flat_pair(x, reference)
    mse = ((x - reference) ** 2).mean(-1)
    return 10 * torch.log10(data_range**2 / mse)
