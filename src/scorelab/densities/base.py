"""The density interface: ``log_prob``, ``score``, and ``sample`` where exact sampling exists."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from scorelab._utils import check_points


class Density:
    """A density ``p(x) = exp(log_prob(x)) / Z`` on ``R^dim``.

    Points are ``[..., dim]`` tensors; ``log_prob`` returns ``[...]`` and ``score`` returns
    ``[..., dim]``, computed in the input's dtype and device. ``normalized`` says whether
    ``log_prob`` includes ``-log Z``. Subclasses implement ``_log_prob`` and, where a closed
    form exists, ``_score`` and ``_sample``; the score defaults to automatic differentiation.
    """

    dim: int
    normalized: bool = True
    # log p and the score may use autograd (the defaults do): closed forms set False, and the
    # MCMC runner then runs eager blocks under torch.inference_mode (less work per operation;
    # autograd fails there, so a subclass of a closed form that uses it sets True again)
    needs_autograd: bool = True

    def log_prob(self, x: Tensor) -> Tensor:
        """Log density at ``x`` (``[..., dim]`` -> ``[...]``); see ``normalized``."""
        check_points(x, self.dim)
        return self._log_prob(x)

    def score(self, x: Tensor) -> Tensor:
        """The score ``grad_x log p(x)`` (``[..., dim]`` -> ``[..., dim]``)."""
        check_points(x, self.dim)
        return self._score(x)

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``n`` exact independent draws, ``[n, dim]`` (float32 unless ``dtype`` says otherwise)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative int (number of samples); got {n!r}")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        return self._sample(n, generator, dtype, torch.device(device or "cpu"))

    # -- to implement -------------------------------------------------------------------
    def _log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _score(self, x: Tensor) -> Tensor:
        return autograd_score(self._log_prob, x)

    def _value_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if type(self)._score is not Density._score:  # closed-form score
            return self._log_prob(x), self._score(x)
        return autograd_value_and_score(self._log_prob, x)  # log p from the same pass

    def _inner_score(self, x: Tensor) -> Tensor:
        # what ``inner_score`` computes: densities whose score costs less without log p
        # override it (closed forms); by autograd log p comes with the score anyway
        return self._value_and_score(x)[1]

    def _sample(
        self, n: int, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} has no exact sampler; draw from it with MCMC "
            "(scorelab.mcmc.sample) instead"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


def value_and_score(density: Density, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(log p(x), grad log p(x))`` in one pass where the density allows it (no input checks:
    for inner loops such as MCMC kernels)."""
    return density._value_and_score(x)


def inner_score(density: Density, x: Tensor) -> Tensor:
    """``grad log p(x)`` alone, no input checks: for inner loops that never read ``log p``
    there (HMC's leapfrog steps before the last), where a closed form costs fewer operations
    without the value."""
    return density._inner_score(x)


def autograd_value_and_score(
    log_prob: Callable[[Tensor], Tensor], x: Tensor
) -> tuple[Tensor, Tensor]:
    """``(log_prob(x), grad_x log_prob(x))`` by one autograd pass over independent points."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        lp = log_prob(xg)
        (grad,) = torch.autograd.grad(lp.sum(), xg)
    return lp.detach(), grad


def func_value_and_score(log_prob: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """``(log_prob(x), grad_x log_prob(x))`` with ``torch.func.grad_and_value`` of the summed
    log-density (the points are independent, so the gradient of the sum is the per-point
    score). Functional: it works under ``torch.no_grad`` and compiles inside a graph
    (``torch.compile``), unlike ``torch.autograd.grad``. Falls back to autograd for functions
    ``torch.func`` cannot transform (e.g. ones that call ``.item()``)."""

    def total(z: Tensor) -> tuple[Tensor, Tensor]:
        lp = log_prob(z)
        return lp.sum(), lp

    try:
        grad, (_, lp) = torch.func.grad_and_value(total, has_aux=True)(x.detach())
    except RuntimeError:
        if torch.compiler.is_compiling():
            raise
        return autograd_value_and_score(log_prob, x)
    return lp.detach(), grad


def autograd_score(log_prob: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``grad_x log_prob(x)`` by automatic differentiation, for a batch of independent points."""
    return autograd_value_and_score(log_prob, x)[1]


class FunctionDensity(Density):
    """A density given by a user function ``x -> log p(x)`` (unnormalized); score by autograd."""

    def __init__(self, fn: Callable[[Tensor], Tensor], dim: int, normalized: bool = False):
        if not callable(fn):
            raise ValueError(f"fn must be a callable x -> log p(x); got {type(fn).__name__}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int (the dimension of x); got {dim!r}")
        self.fn, self.dim, self.normalized = fn, dim, normalized

    def _log_prob(self, x: Tensor) -> Tensor:
        lp = self.fn(x)
        if not isinstance(lp, Tensor) or lp.shape != x.shape[:-1]:
            got = tuple(lp.shape) if isinstance(lp, Tensor) else type(lp).__name__
            raise ValueError(
                f"the log-density function must return one value per point, shape "
                f"{tuple(x.shape[:-1])}, for x of shape {tuple(x.shape)}; got {got}"
            )
        return lp

    def _value_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return func_value_and_score(self._log_prob, x)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"FunctionDensity({name}, dim={self.dim})"


def from_log_prob(fn: Callable[[Tensor], Tensor], dim: int, normalized: bool = False) -> Density:
    """Turn any function ``x [batch, dim] -> log p(x) [batch]`` into a density (score by autograd).

    The normalizing constant is not needed: Langevin MCMC uses only the score.
    """
    return FunctionDensity(fn, dim, normalized)


class ScoreDensity(Density):
    """A target known only through its score ``x -> grad log p(x)`` (a learned model, say):
    unadjusted Langevin (``"ula"`` with a fixed ``step_size``) samples it; kernels with a
    Metropolis-Hastings test need ``log p`` and refuse it."""

    has_log_prob = False
    normalized = False

    def __init__(self, score_fn: Callable[[Tensor], Tensor], dim: int, name: str = "score"):
        if not callable(score_fn):
            raise ValueError(f"score_fn must be a callable x -> grad log p(x); got {score_fn!r}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int (the dimension of x); got {dim!r}")
        self.score_fn, self.dim, self.name = score_fn, dim, name

    def _log_prob(self, x: Tensor) -> Tensor:
        raise ValueError(
            f"{self.name} has a score but no log-density; sample it with kernel 'ula' and a "
            "fixed step_size (Metropolis-Hastings kernels need log p)"
        )

    def _score(self, x: Tensor) -> Tensor:
        return self.score_fn(x)

    def _value_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device), self.score_fn(x)

    def __repr__(self) -> str:
        return f"ScoreDensity({self.name}, dim={self.dim})"


def from_denoiser(
    model: Callable, sigma: float, cond: int | Tensor | None = None, dim: int | None = None
) -> ScoreDensity:
    """The (conditional) smoothed density ``p_sigma(x | cond)`` of a denoiser as an MCMC target:
    score ``(D(x, sigma, cond) - x) / sigma^2`` (Tweedie). ``cond`` is a class label (an int,
    given to every chain) or ``None``; ``dim`` defaults to the model's ``event_shape``."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    if dim is None:
        shape = getattr(model, "event_shape", None)
        if shape is None or len(shape) != 1:
            raise ValueError("pass dim= (MCMC targets are vectors [chains, dim])")
        dim = int(shape[0])

    def score(x: Tensor) -> Tensor:
        s = torch.full(x.shape[:-1], sigma, dtype=x.dtype, device=x.device)
        if cond is None:
            return (model(x, s) - x) / sigma**2
        c = torch.as_tensor(cond, dtype=torch.long, device=x.device).expand(x.shape[:-1])
        return (model(x, s, c) - x) / sigma**2

    return ScoreDensity(score, dim, name=f"denoiser at sigma {sigma}, cond {cond}")
