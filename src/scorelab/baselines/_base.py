"""What every baseline shares: the module contract, shape checks and the small networks.

A baseline is an ``nn.Module`` with

- ``kind`` (``"vae"``, ``"gan"``, ``"dae"``) and ``config()``: JSON-serializable constructor
  arguments plus ``"kind"``, so ``scorelab.baselines.from_config(model.config())`` rebuilds it;
- ``event_shape``: the shape of one example, ``(D,)`` or ``(C, H, W)``;
- ``sample(n, generator=None)``: ``[n, *event_shape]`` draws in model units;
- ``forward(x, *noise)``: the scalar training loss of one minibatch given its random draws.
  The trainer's objective ``loss(model, x, generator, cond)`` (``vae_loss``, ``gan_loss``,
  ``dae_loss``) draws the noise from ``generator``, one row per example, *outside* the model
  and then calls ``model(x, *noise)``, so the loss goes through the module's own ``__call__``
  (DDP and ``torch.compile`` wrappers see the forward pass) and data-parallel ranks can slice
  per-example draws like every other objective's.

Two network shapes serve every family: MLPs for vectors (any ``event_shape``, flattened) and
small convolutional encoders/decoders for images ``[C, H, W]`` with ``H`` and ``W`` divisible
by 4 (two stride-2 stages: digits go 8x8 -> 4x4 -> 2x2).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from scorelab.nets._common import check_int

ARCHS = ("mlp", "conv")


def check_event_shape(event_shape: object) -> tuple[int, ...]:
    """``event_shape`` as a tuple of positive ints, or a ``ValueError`` naming it."""
    try:
        shape = tuple(int(s) for s in event_shape)  # type: ignore[union-attr]
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"event_shape must be a sequence of positive ints, e.g. (2,) or (1, 8, 8); got "
            f"{event_shape!r}"
        ) from err
    if not shape or any(s < 1 for s in shape):
        raise ValueError(
            f"event_shape must be a non-empty sequence of positive ints, e.g. (2,) or (1, 8, 8); "
            f"got {event_shape!r}"
        )
    return shape


def check_arch(arch: str, event_shape: tuple[int, ...]) -> str:
    """``arch`` if it is ``"mlp"`` or a ``"conv"`` that fits ``event_shape``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if arch == "conv":
        if len(event_shape) != 3 or event_shape[1] % 4 or event_shape[2] % 4:
            raise ValueError(
                f"arch 'conv' needs images [C, H, W] with H and W divisible by 4; got examples "
                f"of shape {event_shape}: use arch 'mlp' (net 'mlp' from the command line)"
            )
    return arch


def mlp(
    widths: Sequence[int], act: type[nn.Module] = nn.SiLU, zero_last: bool = False
) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` through ``widths`` (no activation after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    if zero_last:
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """``[B, C, H, W] -> [B, out_dim]``: 3x3 conv, two 4x4 stride-2 convs (H/4 x W/4), linear."""

    def __init__(
        self,
        event_shape: tuple[int, ...],
        channels: int,
        out_dim: int,
        act: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        c_in, h, w = event_shape
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c, 3, padding=1),
            act(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),
            act(),
            nn.Conv2d(2 * c, 2 * c, 4, stride=2, padding=1),
            act(),
            nn.Flatten(),
            nn.Linear(2 * c * (h // 4) * (w // 4), out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """``[B, in_dim] -> [B, C, H, W]``: linear to ``H/4 x W/4``, two 4x4 stride-2 transposed
    convs, 3x3 conv to ``C`` channels."""

    def __init__(
        self,
        in_dim: int,
        channels: int,
        event_shape: tuple[int, ...],
        act: type[nn.Module] = nn.SiLU,
        zero_last: bool = False,
    ) -> None:
        super().__init__()
        c_out, h, w = event_shape
        c = channels
        self.net = nn.Sequential(
            nn.Linear(in_dim, 2 * c * (h // 4) * (w // 4)),
            act(),
            nn.Unflatten(1, (2 * c, h // 4, w // 4)),
            nn.ConvTranspose2d(2 * c, 2 * c, 4, stride=2, padding=1),
            act(),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),
            act(),
            nn.Conv2d(c, c_out, 3, padding=1),
        )
        if zero_last:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def encoder(
    arch: str,
    event_shape: tuple[int, ...],
    out_dim: int,
    hidden: int,
    depth: int,
    channels: int,
    act: type[nn.Module] = nn.SiLU,
) -> nn.Module:
    """An MLP (on the flattened example) or a ``ConvEncoder`` from one example to ``out_dim``."""
    if arch == "conv":
        return ConvEncoder(event_shape, channels, out_dim, act)
    return nn.Sequential(
        nn.Flatten(), mlp([math.prod(event_shape), *[hidden] * depth, out_dim], act)
    )


def decoder(
    arch: str,
    in_dim: int,
    event_shape: tuple[int, ...],
    hidden: int,
    depth: int,
    channels: int,
    act: type[nn.Module] = nn.SiLU,
    zero_last: bool = False,
) -> nn.Module:
    """An MLP or a ``ConvDecoder`` from ``in_dim`` to one example ``[*event_shape]``."""
    if arch == "conv":
        return ConvDecoder(in_dim, channels, event_shape, act, zero_last)
    return nn.Sequential(
        mlp([in_dim, *[hidden] * depth, math.prod(event_shape)], act, zero_last),
        nn.Unflatten(1, event_shape),
    )


def check_sizes(hidden: int, depth: int, channels: int, latent_dim: int | None = None) -> None:
    """Raise unless the network sizes are positive ints (``depth`` may be 0 for MLPs)."""
    check_int(hidden, "hidden")
    check_int(depth, "depth", 0)
    check_int(channels, "channels")
    if latent_dim is not None:
        check_int(latent_dim, "latent_dim")


class Baseline(nn.Module):
    """Base class of the VAE, GAN and DAE (see the module docstring for the contract)."""

    kind: ClassVar[str] = ""
    num_classes: int | None = None  # baselines are unconditional (the trainer asks)

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        self._config: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        """JSON-serializable constructor arguments and ``"kind"``: ``from_config`` rebuilds it."""
        return {"kind": self.kind, "event_shape": list(self.event_shape), **self._config}

    @property
    def nfe(self) -> int:
        """Network evaluations per sample drawn by ``sample`` (1 for one decoder pass)."""
        return 1

    def _param(self) -> Tensor:
        return next(self.parameters())

    def _check_n(self, n: object) -> int:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive int (number of samples); got {n!r}")
        return n

    def _check_x(self, x: object, name: str = "x") -> Tensor:
        """``x`` as ``[batch, *event_shape]`` in the parameters' dtype, or a clear error."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(
                f"{name} must be a floating tensor shaped [batch, *{self.event_shape}]; got "
                f"{type(x).__name__ if not isinstance(x, Tensor) else x.dtype}"
            )
        if tuple(x.shape[1:]) != self.event_shape or x.ndim < 2:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; this {self.kind.upper()} models examples of "
                f"shape {self.event_shape}, so pass [batch, *{self.event_shape}]"
            )
        p = self._param()
        if x.dtype != p.dtype:
            raise ValueError(
                f"{name} is {x.dtype} but the model's parameters are {p.dtype}; convert one, e.g. "
                f"model.to({x.dtype})"
            )
        return x

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``[n, *event_shape]`` draws from the model, in model units."""
        raise NotImplementedError


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` (``.module``) or ``torch.compile``
    (``._orig_mod``) wrapper."""
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            return unwrap(inner)
    return model


def check_kind(model: nn.Module, kind: str, loss: str) -> None:
    """Raise unless ``model`` (possibly wrapped) is a baseline of ``kind``."""
    inner = unwrap(model)
    if getattr(inner, "kind", None) != kind:
        raise ValueError(
            f"{loss} trains a {kind.upper()} (scorelab.baselines); got {type(inner).__name__}"
        )


def check_unconditional(cond: object, name: str) -> None:
    """Raise if class labels were passed to an unconditional baseline."""
    if cond is not None:
        raise ValueError(
            f"the {name} baseline is unconditional: it takes no class labels (train it without "
            "--conditional)"
        )
