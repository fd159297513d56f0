"""Input checks and blocked pairwise-distance kernels shared by the metrics.

Every pairwise computation runs over blocks of rows holding about ``BLOCK_ENTRIES`` distances,
so a 10k x 10k comparison needs a few tens of MB whatever the set sizes, on the inputs' device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from scorelab._utils import check_finite

BLOCK_ENTRIES = 1 << 22  # distances held at once: 16 MB in float32
EXTRA = 8  # k-NN candidates beyond k whose distances are recomputed exactly


def flat_samples(x: object, name: str, min_n: int = 2, why: str = "") -> Tensor:
    """``x`` as a finite floating ``[n, features]`` tensor with at least ``min_n`` rows."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [n, *event]; got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating tensor (float32 or float64); got {x.dtype}: "
            f"convert it with {name}.float()"
        )
    if x.ndim < 2:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; expected [n, *event] with one sample per row, "
            f"e.g. {name}[:, None] for scalar samples"
        )
    if x.shape[0] < min_n:
        raise ValueError(
            f"{name} has {x.shape[0]} samples but at least {min_n} are needed{why}; "
            "pass more samples"
        )
    check_finite(x, name)
    return x.reshape(x.shape[0], -1)


def flat_pair(
    x: object, y: object, names: tuple[str, str] = ("x", "y"), min_n: int = 2, why: str = ""
) -> tuple[Tensor, Tensor]:
    """Both sets checked and flattened, in a common dtype on ``x``'s device."""
    x, y = flat_samples(x, names[0], min_n, why), flat_samples(y, names[1], min_n, why)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same event size; got {x.shape[1]} and "
            f"{y.shape[1]} features per sample: compare samples of the same kind (e.g. features "
            "from the same network)"
        )
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype), y.to(device=x.device, dtype=dtype)


def check_k(k: object, name: str = "k") -> int:
    """Raise unless ``k`` is an int >= 1 (a neighbour count)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"{name} must be an int >= 1 (the neighbour index); got {k!r}")
    return k


def rows_per_block(m: int, chunk: int | None) -> int:
    """Rows per block against ``m`` reference rows: ``chunk`` or about ``BLOCK_ENTRIES / m``."""
    if chunk is None:
        return max(1, BLOCK_ENTRIES // max(m, 1))
    return check_k(chunk, "chunk")


def sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances ``[len(a), len(b)]`` as ``|a|^2 + |b|^2 - 2 a.b`` (one fused
    matrix product; clamped at 0)."""
    d2 = torch.addmm(b.square().sum(-1).unsqueeze(0), a, b.mT, alpha=-2)
    return d2.add_(a.square().sum(-1, keepdim=True)).clamp_min_(0)


def pair_sum(
    a: Tensor,
    b: Tensor,
    fn: Callable[[Tensor], Tensor],
    *,
    same: bool = False,
    chunk: int | None = None,
) -> Tensor:
    """``sum_{i,j} fn(|a_i - b_j|^2)`` in float64, leaving out ``i == j`` when ``same``."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    step = rows_per_block(b.shape[0], chunk)
    for start in range(0, a.shape[0], step):
        vals = fn(sq_dists(a[start : start + step], b))
        if same:
            i = torch.arange(vals.shape[0], device=a.device)
            vals[i, start + i] = 0
        total += vals.sum(dtype=torch.float64)
    return total


def kth_neighbor_distance(
    x: Tensor, ref: Tensor, k: int, self_offset: int | None = None, chunk: int | None = None
) -> Tensor:
    """Distance from each row of ``x`` to its ``k``-th nearest row of ``ref``, ``[n]``.

    With ``self_offset``, row ``i`` of ``x`` is row ``self_offset + i`` of ``ref`` and is left
    out (leave-one-out neighbours). The matrix-product distances pick ``k + EXTRA`` candidates,
    whose distances are then recomputed from differences: the product form loses tiny distances
    to cancellation (a float32 nearest neighbour at 1e-4 would read as 0).
    """
    out = []
    step = rows_per_block(ref.shape[0], chunk)
    n_cand = min(k + EXTRA, ref.shape[0] - (self_offset is not None))
    ref_sq = ref.square().sum(-1).unsqueeze(0)
    for start in range(0, x.shape[0], step):
        block = x[start : start + step]
        key = torch.addmm(ref_sq, block, ref.mT, alpha=-2)  # |x - r|^2 - |x|^2: same order
        if self_offset is not None:
            i = torch.arange(key.shape[0], device=x.device)
            key[i, self_offset + start + i] = torch.inf
        cand = key.topk(n_cand, dim=1, largest=False).indices  # [rows, n_cand]
        exact = (block[:, None, :] - ref[cand]).norm(dim=-1)
        out.append(exact.topk(k, dim=1, largest=False).values[:, -1])
    return torch.cat(out)
