"""Input validation and small tensor helpers shared by every layer.

Each check raises ``ValueError`` naming the argument, what was wrong and what is expected,
before any work is done.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def as_tensor(value: object, name: str, dtype: torch.dtype | None = None) -> Tensor:
    """Convert ``value`` to a floating tensor, naming ``name`` if it cannot be converted."""
    try:
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, Tensor) for v in value):
            value = torch.stack(value)
        t = torch.as_tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a number or array of numbers; got {value!r}") from err
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype() if dtype is None else dtype)
    return t


def check_finite(t: Tensor, name: str) -> None:
    """Raise if ``t`` holds NaN or inf, naming the first bad index."""
    bad = ~torch.isfinite(t)
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} has {int(bad.sum())} non-finite value(s) (first at index {idx}: "
            f"{t[idx].item()}); pass finite numbers"
        )


def check_positive(value: float | Tensor, name: str) -> None:
    """Raise unless every entry of ``value`` is finite and > 0."""
    t = torch.as_tensor(value)
    if not torch.isfinite(t).all() or (t <= 0).any():
        shown = t.item() if t.numel() == 1 else t.min().item()
        raise ValueError(f"{name} must be finite and > 0; got {shown}")


def check_points(x: Tensor, dim: int, name: str = "x") -> None:
    """Raise unless ``x`` is a floating tensor shaped ``[..., dim]``."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor shaped [batch, {dim}]; got {type(x)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor (float32 or float64); got {x.dtype}")
    if x.ndim == 0 or x.shape[-1] != dim:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)} but the density is on R^{dim}: "
            f"expected shape [batch, {dim}]"
        )


def check_sigma(sigma: float | Tensor, x: Tensor, name: str = "sigma") -> Tensor:
    """Return ``sigma`` as a tensor in ``x``'s dtype/device, shaped to broadcast over ``x``'s batch.

    ``sigma`` is a scalar or has one entry per point (``x.shape[:-1]``); every entry must be > 0.
    The result has shape ``x.shape[:-1] + (1,)`` or ``(1,)`` for a scalar.
    """
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    check_positive(s, name)
    if s.ndim == 0:
        return s.reshape(1)
    if s.shape != x.shape[:-1]:
        raise ValueError(
            f"{name} has shape {tuple(s.shape)}; expected a scalar or one value per point, "
            f"shape {tuple(x.shape[:-1])}"
        )
    return s.unsqueeze(-1)


def append_dims(t: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so a per-sample ``[batch]`` tensor broadcasts to ``ndim``."""
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


LOG_2PI = math.log(2 * math.pi)


def _draw(fn, shape, generator, dtype, device) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return fn(shape, generator=generator, dtype=dtype, device=gen_device).to(device)


def randn(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Standard normal draws from ``generator`` (on its own device), moved to ``device``."""
    return _draw(torch.randn, shape, generator, dtype, device)


def rand(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniform [0, 1) draws from ``generator`` (on its own device), moved to ``device``."""
    return _draw(torch.rand, shape, generator, dtype, device)
