"""Standard errors for the statistical tests of the metrics."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def u_statistic_se(h: Tensor) -> float:
    """Standard error of the order-2 U-statistic ``mean_{i != j} h(z_i, z_j)`` over ``n`` iid
    points, from the symmetric matrix ``h`` ``[n, n]`` (Hoeffding 1948):
    ``Var U = (4 (n - 2) zeta_1 + 2 zeta_2) / (n (n - 1))`` with ``zeta_1 = Var E[h(z, Z) | z]``
    and ``zeta_2 = Var h(Z, Z')``. A row mean of ``n - 1`` off-diagonal entries has variance
    ``zeta_1 + (zeta_2 - zeta_1) / (n - 1)``, which is solved for ``zeta_1`` (otherwise a
    degenerate statistic, ``zeta_1 = 0`` as for MMD of equal laws, gets a ~2x too wide SE).
    """
    n = h.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=h.device)
    vals = h[off]
    row_means = (h * off).sum(1) / (n - 1)
    zeta2 = vals.var().item()
    zeta1 = max((row_means.var().item() - zeta2 / (n - 1)) * (n - 1) / (n - 2), 0.0)
    return math.sqrt(max(4 * (n - 2) * zeta1 + 2 * zeta2, 0.0) / (n * (n - 1)))


def grouped_jackknife_se(stat, x: Tensor, y: Tensor, groups: int = 20) -> float:
    """Delete-a-group jackknife standard error (Efron & Stein 1981) of ``stat(x, y)``: split
    both sets into ``groups`` equal parts and recompute without one part of each at a time."""
    xs, ys = x.chunk(groups), y.chunk(groups)
    vals = []
    for g in range(groups):
        keep = [i for i in range(groups) if i != g]
        vals.append(float(stat(torch.cat([xs[i] for i in keep]), torch.cat([ys[i] for i in keep]))))
    v = torch.tensor(vals, dtype=torch.float64)
    return math.sqrt((groups - 1) / groups * (v - v.mean()).square().sum().item())
