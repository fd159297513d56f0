"""The Euclidean metric of Hamiltonian kernels: kinetic energy ``K(p) = p^T M^{-1} p / 2``.

The inverse mass ``M^{-1}`` is diagonal (``[dim]``) or dense (``[dim, dim]``); momenta are drawn
from ``N(0, M)``. Every Hamiltonian kernel (HMC, NUTS, ChEES) uses this one object, so a dense
metric works everywhere at once. Step sizes are a float or one per chain (``[chains]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from scorelab._utils import append_dims, randn


def per_chain(value: float | Tensor, x: Tensor) -> float | Tensor:
    """A float, or a ``[chains]`` tensor shaped to broadcast over ``x`` ``[chains, *event]``."""
    if isinstance(value, Tensor) and value.ndim == 1:
        return append_dims(value, x.ndim)
    return value


@dataclass(frozen=True)
class Metric:
    """``M^{-1}`` (``inv_mass``) and the factor ``A``: ``p = z A ~ N(0, M)`` for ``z ~ N(0, I)``.

    Diagonal: ``A = 1 / sqrt(M^{-1})``. Dense: with ``M^{-1} = L L^T`` (Cholesky), ``A = L^{-1}``,
    since ``A^T A = L^{-T} L^{-1} = (L L^T)^{-1} = M``. ``per_chain``: one diagonal per chain,
    ``[chains, dim]`` (as Stan, NumPyro and BlackJAX adapt it). Build with
    ``Metric.from_inv_mass``.
    """

    inv_mass: Tensor  # [dim] or [chains, dim] diagonal, or [dim, dim] dense (s.p.d.)
    factor: Tensor  # shaped as inv_mass, see above
    per_chain: bool = False  # inv_mass is [chains, dim]: one diagonal per chain
    half: Tensor = field(init=False, repr=False)  # M^{-1} / 2, for the kinetic energy

    def __post_init__(self):
        object.__setattr__(self, "half", self.inv_mass * 0.5)

    @classmethod
    def from_inv_mass(cls, inv_mass: Tensor, per_chain: bool = False) -> Metric:
        """Check ``inv_mass`` (positive, or symmetric positive definite) and factor it once;
        ``per_chain``: a ``[chains, dim]`` diagonal per chain."""
        if inv_mass.ndim == 1 or per_chain:
            if per_chain and inv_mass.ndim != 2:
                raise ValueError(
                    f"a per-chain inv_mass must be [chains, dim]; got shape {tuple(inv_mass.shape)}"
                )
            if not (torch.isfinite(inv_mass).all() and (inv_mass > 0).all()):
                raise ValueError(
                    f"inv_mass must be finite and > 0; smallest entry {inv_mass.min().item():.3g}"
                )
            return cls(inv_mass, inv_mass.rsqrt(), per_chain)
        if inv_mass.ndim != 2 or inv_mass.shape[0] != inv_mass.shape[1]:
            raise ValueError(
                f"inv_mass must be [dim] (diagonal) or [dim, dim] (dense); got shape "
                f"{tuple(inv_mass.shape)}"
            )
        chol, info = torch.linalg.cholesky_ex(inv_mass.double())
        if info.item() != 0 or not torch.allclose(inv_mass, inv_mass.mT):
            raise ValueError(
                "inv_mass is not symmetric positive definite; pass a covariance-like matrix "
                "(e.g. the posterior covariance) or a [dim] diagonal"
            )
        eye = torch.eye(inv_mass.shape[0], dtype=torch.float64, device=inv_mass.device)
        factor = torch.linalg.solve_triangular(chol, eye, upper=False)
        return cls(inv_mass, factor.to(inv_mass.dtype))

    @classmethod
    def identity(cls, x: Tensor) -> Metric:
        """The unit metric for positions like ``x`` ``[chains, dim]``."""
        ones = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
        return cls(ones, ones)

    @property
    def dense(self) -> bool:
        return self.inv_mass.ndim == 2 and not self.per_chain

    def _apply(self, m: Tensor, p: Tensor) -> Tensor:
        """``m p`` for a field shaped like ``inv_mass`` (``inv_mass``, ``half``) and momenta
        ``[chains, dim]`` or ``[chains, ..., dim]``: a product with the dense matrix, else
        with the diagonal (per chain shaped ``[chains, 1, ..., dim]``)."""
        if self.dense:
            return p @ m
        if self.per_chain and p.ndim > 2:
            m = m.reshape(m.shape[0], *[1] * (p.ndim - 2), m.shape[1])
        return p * m

    def velocity(self, p: Tensor) -> Tensor:
        """``dx/dt = M^{-1} p`` for momenta ``[chains, dim]`` (or ``[chains, ..., dim]``)."""
        return self._apply(self.inv_mass, p)

    def kinetic(self, p: Tensor) -> Tensor:
        """``K(p) = p^T M^{-1} p / 2`` per chain, ``[chains]``, as ``p . (M^{-1} / 2) p``: halving
        is exact, so the same bits as halving the sum, in one call fewer."""
        return (p * self._apply(self.half, p)).sum(-1)

    def momentum(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Fresh momenta ``p ~ N(0, M)`` shaped like ``x`` ``[chains, dim]``."""
        z = randn(x.shape, generator, x.dtype, x.device)
        return z @ self.factor if self.dense else z * self.factor


def as_metric(inv_mass: Metric | Tensor | None, x: Tensor) -> Metric:
    """A ``Metric`` from a ``Metric``, an inverse mass tensor, or ``None`` (the identity)."""
    if inv_mass is None:
        return Metric.identity(x)
    if isinstance(inv_mass, Metric):
        return inv_mass
    return Metric.from_inv_mass(torch.as_tensor(inv_mass, dtype=x.dtype, device=x.device))
