"""Classic MCMC targets with closed-form log-density, score and exact sampler."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scorelab._utils import (
    LOG_2PI,
    as_tensor,
    check_finite,
    check_positive,
    rand,
    randn,
    scalars,
)
from scorelab.densities.base import Density


def _check_dim(dim: object) -> int:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim must be a positive int; got {dim!r}")
    return dim


class Laplace(Density):
    """Product of Laplace densities with standard deviation ``scale`` per coordinate.

    ``p(x) = prod_i exp(-sqrt(2) |x_i - loc_i| / scale_i) / (sqrt(2) scale_i)``; with the
    defaults this is ``exp(-sqrt(2)|x|)/sqrt(2)``, mean 0 and variance 1. Normalized. The score
    ``-sqrt(2) sign(x - loc) / scale`` is defined everywhere but at ``x = loc``, where we take 0.
    """

    needs_autograd = False  # closed-form log p and score

    def __init__(self, dim: int = 1, loc: object = 0.0, scale: object = 1.0):
        self.dim, self.normalized = _check_dim(dim), True
        self.loc = as_tensor(loc, "loc", torch.float64).expand(dim).clone()
        self.scale = as_tensor(scale, "scale", torch.float64).expand(dim).clone()
        check_finite(self.loc, "loc")
        check_positive(self.scale, "scale")
        self._b = self.scale / math.sqrt(2)  # the Laplace scale parameter b = sd / sqrt(2)
        self._cache: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor, Tensor]] = {}

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``loc``, ``1 / b`` and ``sum log 2b`` in ``x``'s dtype and device (cached)."""
        key = (x.dtype, x.device)
        if key not in self._cache:
            const = torch.log(2 * self._b).sum()
            self._cache[key] = tuple(t.to(x) for t in (self.loc, 1 / self._b, const))
        return self._cache[key]

    def _log_prob(self, x: Tensor) -> Tensor:
        loc, inv_b, const = self._params(x)
        return -((x - loc).abs() * inv_b).sum(-1) - const

    def _score(self, x: Tensor) -> Tensor:
        loc, inv_b, _ = self._params(x)
        return -torch.sign(x - loc) * inv_b

    _inner_score = _score  # closed form, no checks: fewer operations than with log p

    def _value_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        loc, inv_b, const = self._params(x)
        d = x - loc
        return -(d.abs() * inv_b).sum(-1) - const, -torch.sign(d) * inv_b

    def _sample(self, n, generator, dtype, device) -> Tensor:
        # difference of two Exp(1) draws is Laplace(0, 1); 1 - U lies in (0, 1]
        u = 1 - rand((2, n, self.dim), generator, dtype, device)
        lap = torch.log(u[0]) - torch.log(u[1])
        return self.loc.to(lap) + self._b.to(lap) * lap


class Banana(Density):
    """Haario et al. (1999) twisted Gaussian ("banana"), a Rosenbrock-type density on R^2.

    ``x1 = a z1``, ``x2 = z2 + b (x1^2 - a^2)`` with ``z ~ N(0, I)``: a Gaussian bent into a
    parabola. Normalized (the map has unit Jacobian); mean 0, ``Var x1 = a^2``,
    ``Var x2 = 1 + 2 b^2 a^4``.
    """

    needs_autograd = False  # closed-form log p and score

    def __init__(self, a: float = 1.0, b: float = 1.0):
        check_positive(a, "a")
        if not math.isfinite(b):
            raise ValueError(f"b must be finite; got {b}")
        self.a, self.b, self.dim, self.normalized = float(a), float(b), 2, True

    def _constants(self, x: Tensor) -> tuple[Tensor, ...]:
        """``b``, ``a^2``, ``-2b``, ``1 / a^2``, ``-1/2`` and the normalizing term (``scalars``)."""
        a2 = self.a**2
        return scalars(x, self.b, a2, -2 * self.b, 1 / a2, -0.5, math.log(self.a) + LOG_2PI)

    # log p and the score share x1 and v = b (x1^2 - a^2) - x2 = -u (u the standard normal
    # z2): MCMC kernels take both at once. v rather than u saves the score's negation and
    # gives the same bits (c - x2 = -(x2 - c) exactly; (-2b) v = 2b u exactly)
    def _parts(self, x: Tensor, c: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
        x1, x2 = x.unbind(-1)
        sq = x1 * x1
        return x1, sq, c[0] * (sq - c[1]) - x2

    def _value(self, sq: Tensor, v: Tensor, c: tuple[Tensor, ...]) -> Tensor:
        return c[4] * (sq / c[1] + v * v) - c[5]

    def _grad(self, x1: Tensor, v: Tensor, c: tuple[Tensor, ...]) -> Tensor:
        return torch.stack([x1 * (c[2] * v - c[3]), v], -1)

    def _log_prob(self, x: Tensor) -> Tensor:
        c = self._constants(x)
        _, sq, v = self._parts(x, c)
        return self._value(sq, v, c)

    def _score(self, x: Tensor) -> Tensor:
        c = self._constants(x)
        x1, _, v = self._parts(x, c)
        return self._grad(x1, v, c)

    _inner_score = _score  # closed form, no checks: fewer operations than with log p

    def _value_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        c = self._constants(x)
        x1, sq, v = self._parts(x, c)
        return self._value(sq, v, c), self._grad(x1, v, c)

    def _sample(self, n, generator, dtype, device) -> Tensor:
        z = randn((n, 2), generator, dtype, device)
        x1 = self.a * z[:, 0]
        return torch.stack([x1, z[:, 1] + self.b * (x1**2 - self.a**2)], -1)

    def __repr__(self) -> str:
        return f"Banana(a={self.a}, b={self.b})"


class Funnel(Density):
    """Neal's (2003) funnel: ``v ~ N(0, scale^2)``, ``x_i | v ~ N(0, exp(v))``, ``x = (v, x_1..)``.

    Normalized. The first coordinate is ``v``; the neck (``v << 0``) defeats fixed step sizes.
    """

    needs_autograd = False  # closed-form log p and score

    def __init__(self, dim: int = 10, scale: float = 3.0):
        if _check_dim(dim) < 2:
            raise ValueError(f"dim must be >= 2 for the funnel (v and at least one x); got {dim}")
        check_positive(scale, "scale")
        self.dim, self.scale, self.normalized = dim, float(scale), True

    def _constants(self, x: Tensor) -> tuple[Tensor, ...]:
        """``k = dim - 1``, ``scale^2``, ``1/2``, ``-1/2`` and the normalizing term
        (``scalars``)."""
        const = -math.log(self.scale) - 0.5 * self.dim * LOG_2PI
        return scalars(x, self.dim - 1, self.scale**2, 0.5, -0.5, const)

    # log p and the score share v, e^-v and |x_1..|^2: MCMC kernels take both at once.
    # log p = -(v^2 / scale^2 + e^-v |x_1..|^2 + k v) / 2 - log scale - (k + 1) log(2 pi) / 2
    def _parts(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        v, rest = x[..., :1], x[..., 1:]
        inv = torch.exp(-v)
        return v, rest, inv, (rest * rest).sum(-1, keepdim=True) * inv

    def _value(self, v: Tensor, spread: Tensor, c: tuple[Tensor, ...]) -> Tensor:
        k, s2, _, minus_half, const = c
        return (minus_half * (v * (v / s2 + k) + spread) + const).squeeze(-1)

    def _grad(self, v: Tensor, rest: Tensor, inv: Tensor, spread: Tensor, c) -> Tensor:
        k, s2, half = c[:3]
        return torch.cat([half * (spread - k) - v / s2, rest * -inv], -1)

    def _log_prob(self, x: Tensor) -> Tensor:
        v, _, _, spread = self._parts(x)
        return self._value(v, spread, self._constants(x))

    def _score(self, x: Tensor) -> Tensor:
        return self._grad(*self._parts(x), self._constants(x))

    _inner_score = _score  # closed form, no checks: fewer operations than with log p

    def _value_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        v, rest, inv, spread = self._parts(x)
        c = self._constants(x)
        return self._value(v, spread, c), self._grad(v, rest, inv, spread, c)

    def _sample(self, n, generator, dtype, device) -> Tensor:
        z = randn((n, self.dim), generator, dtype, device)
        v = self.scale * z[:, :1]
        return torch.cat([v, z[:, 1:] * torch.exp(v / 2)], -1)

    def __repr__(self) -> str:
        return f"Funnel(dim={self.dim}, scale={self.scale})"
