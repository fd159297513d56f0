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
