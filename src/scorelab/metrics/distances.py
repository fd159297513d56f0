"""Distances between sample sets: sliced Wasserstein, MMD, energy distance, nearest neighbours.

MMD and the energy distance sum over all pairs in blocks of rows (``chunk`` rows at a time,
by default about 4M distances per block), so 10k x 10k sets fit in bounded memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from scorelab._utils import randn
from scorelab.metrics._common import flat_pair, pair_sum

MEDIAN_SUBSET = 1000  # points of the pooled set used for the median-distance bandwidth


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


def _median_distance(x: Tensor, y: Tensor) -> Tensor:
    """Median pairwise distance of the pooled set (an evenly strided subset of at most
    ``MEDIAN_SUBSET`` points, so the cost does not grow with the set sizes)."""
    z = torch.cat([x, y])
    if z.shape[0] > MEDIAN_SUBSET:
        z = z[torch.linspace(0, z.shape[0] - 1, MEDIAN_SUBSET, device=z.device).long()]
    med = torch.nn.functional.pdist(z).median()
    if med <= 0:
        raise ValueError(
            "the median pairwise distance of x and y is 0 (most points coincide), so it gives "
            "no kernel bandwidth; pass bandwidths explicitly"
        )
    return med


def mmd(
    x: Tensor,
    y: Tensor,
    bandwidths: Sequence[float] | Tensor | None = None,
    *,
    chunk: int | None = None,
) -> Tensor:
    """Unbiased squared maximum mean discrepancy MMD^2_u (Gretton et al. 2012, eq. 3) with the
    kernel ``k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2))`` over ``bandwidths``.

    The default bandwidths are the median pairwise distance of the pooled sets times
    (0.5, 1, 2). Unbiased means ``E MMD^2_u = MMD^2``, so the estimate can be slightly negative
    when the two laws are equal. Images are flattened; the sets may differ in size.
    """
    x, y = flat_pair(x, y)
    center = x.mean(0)  # distances are shift-invariant; centring keeps |a|^2 + |b|^2 - 2ab exact
    x, y = x - center, y - center
    if bandwidths is None:
        h = _median_distance(x, y) * torch.tensor([0.5, 1.0, 2.0], dtype=x.dtype, device=x.device)
    else:
        h = torch.as_tensor(bandwidths, dtype=x.dtype).to(x.device).reshape(-1)
        if h.numel() == 0 or not torch.isfinite(h).all() or (h <= 0).any():
            raise ValueError(
                f"bandwidths must be a non-empty list of finite values > 0; got {bandwidths!r}"
            )
    inv = (-0.5 / h.square()).tolist()

    def kernel(d2: Tensor) -> Tensor:
        return sum(torch.exp(d2 * c) for c in inv)

    n, m = x.shape[0], y.shape[0]
    kxx = pair_sum(x, x, kernel, same=True, chunk=chunk) / (n * (n - 1))
    kyy = pair_sum(y, y, kernel, same=True, chunk=chunk) / (m * (m - 1))
    kxy = pair_sum(x, y, kernel, chunk=chunk) / (n * m)
    return (kxx + kyy - 2 * kxy).to(x.dtype)


def energy_distance(x: Tensor, y: Tensor, *, chunk: int | None = None) -> Tensor:
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Szekely & Rizzo 2013),
    with unbiased within-set means over distinct pairs.

    It is >= 0 and zero only for equal laws; its square root is a metric. Images are flattened;
    the sets may differ in size.
    """
    x, y = flat_pair(x, y)
    center = x.mean(0)
    x, y = x - center, y - center
    n, m = x.shape[0], y.shape[0]
    exx = pair_sum(x, x, torch.sqrt, same=True, chunk=chunk) / (n * (n - 1))
    eyy = pair_sum(y, y, torch.sqrt, same=True, chunk=chunk) / (m * (m - 1))
    exy = pair_sum(x, y, torch.sqrt, chunk=chunk) / (n * m)
    return (2 * exy - exx - eyy).to(x.dtype)
