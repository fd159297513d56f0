"""Input validation and small tensor helpers shared by every layer.

Each check raises ``ValueError`` naming the argument, what was wrong and what is expected,
before any work is done.
"""

from __future__ import annotations

import functools
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


def scalars(like: Tensor, *values: float) -> tuple[Tensor, ...] | tuple[float, ...]:
    """``values`` as cached 0-dim CPU tensors for arithmetic with tensors of ``like``'s dtype
    (float64 for float64, else float32: the precision torch computes a Python number in);
    inside ``torch.compile``, the numbers themselves.

    For eager inner loops (MCMC transitions: a few hundred operations on small tensors):
    ``t * 0.5`` costs ~2.5 us on the CPU against ~1 us for ``t * c`` with a 0-dim tensor ``c``,
    because torch first wraps each Python number in a fresh tensor (measured on 64 x 2
    float32; comparisons alike). The result is the same: torch casts a Python number to that
    precision too, and reads a 0-dim CPU tensor in an operation with a CUDA tensor as a number,
    as it does a Python one. Not for ``number / tensor``, which torch computes as
    ``tensor.reciprocal() * number`` (use ``reciprocal``). Compiled graphs keep the numbers,
    folded into their kernels."""
    if torch.compiler.is_compiling():
        return values
    return _scalar_tensors(values, torch.float64 if like.dtype == torch.float64 else torch.float32)


@functools.lru_cache(maxsize=1024)
def _scalar_tensors(values: tuple[float, ...], dtype: torch.dtype) -> tuple[Tensor, ...]:
    with torch.inference_mode(False):  # ordinary tensors, usable with autograd later
        return tuple(torch.tensor(v, dtype=dtype) for v in values)


class DrawSource:
    """A stand-in for a ``torch.Generator`` that ``randn`` and ``rand`` recognize.

    The MCMC runner draws a block's random numbers up front from the user's generator and hands
    them to the kernels through one of these, so a kernel keeps calling ``randn(shape,
    generator, ...)`` unchanged while running inside a compiled block (``scorelab.mcmc.runner``).
    """

    def draw(self, kind: str, shape: tuple[int, ...], dtype, device) -> Tensor:
        raise NotImplementedError


class PreDrawn(DrawSource):
    """Hands out ``draws`` in order, one tensor per ``randn``/``rand`` call (pure: no
    generator state, so it can live inside a compiled graph)."""

    def __init__(self, draws: list[Tensor] | tuple[Tensor, ...]):
        self.draws, self.i = draws, 0

    def draw(self, kind: str, shape: tuple[int, ...], dtype, device) -> Tensor:
        if self.i >= len(self.draws):
            raise RuntimeError(
                "the kernel drew more random numbers than its recorded dry run: a kernel run in "
                "compiled blocks must draw the same shapes every transition (mark it "
                "compilable=False otherwise)"
            )
        t = self.draws[self.i]
        self.i += 1
        return t


class DrawRecorder(DrawSource):
    """Draws from ``generator`` like ``randn``/``rand`` and records each call's
    ``(kind, shape, dtype)``: the dry run that tells the runner what to pre-draw per block."""

    def __init__(self, generator: torch.Generator | None):
        self.generator, self.calls = generator, []

    def draw(self, kind: str, shape: tuple[int, ...], dtype, device) -> Tensor:
        self.calls.append((kind, tuple(shape), dtype))
        fn = torch.randn if kind == "randn" else torch.rand
        return _draw(fn, shape, self.generator, dtype, device)


def _draw(fn, shape, generator, dtype, device) -> Tensor:
    if isinstance(generator, DrawSource):
        return generator.draw("randn" if fn is torch.randn else "rand", shape, dtype, device)
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


def device_problem(device: torch.device) -> str | None:
    """Why ``device`` cannot be used on this machine (e.g. no CUDA), or ``None`` if it can."""
    if device.type in ("cpu", "meta"):
        return None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available on this machine"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}"
        return None
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        return None if mps and mps.is_available() else "MPS is not available on this machine"
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        return f"{device.type} is not usable here ({err})"
    return None
