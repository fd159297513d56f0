"""Checks and helpers shared by the networks and the denoiser wrappers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw parameter initializations from ``seed`` without touching the global CPU RNG state."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int (it fixes the initialization); got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """Raise unless ``value`` is an int >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def check_x(x: object, name: str = "x") -> Tensor:
    """Raise unless ``x`` is a floating tensor ``[batch, *event]`` with at least one event dim."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor shaped [batch, *event]; got {type(x)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor (float32 or float64); got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; expected [batch, *event] (at least 2-D), "
            f"e.g. x[None] for a single point"
        )
    return x


def check_dtype(x: Tensor, module: nn.Module, name: str = "x") -> None:
    """Raise if ``x``'s dtype differs from ``module``'s parameters (instead of a matmul error)."""
    p = next(module.parameters(), None)
    if p is not None and p.dtype != x.dtype:
        raise ValueError(
            f"{name} is {x.dtype} but the network's parameters are {p.dtype}; convert one to "
            f"match, e.g. model.to({x.dtype}) or {name}.to({p.dtype})"
        )


def check_c_noise(c_noise: float | Tensor, x: Tensor) -> Tensor:
    """``c_noise`` (scalar or ``[batch]``) as a ``[batch]`` tensor in ``x``'s dtype and device."""
    c = torch.as_tensor(c_noise, dtype=x.dtype, device=x.device)
    batch = x.shape[0]
    if c.numel() == 1:
        return c.reshape(1).expand(batch)
    if c.shape != (batch,):
        raise ValueError(
            f"c_noise has shape {tuple(c.shape)}; expected a scalar or one value per sample, "
            f"shape ({batch},)"
        )
    return c


def num_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
