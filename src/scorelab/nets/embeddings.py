"""Embeddings of the noise-conditioning value ``c_noise`` and of class labels.

The noise embeddings map ``c_noise`` ``[batch]`` to features ``[batch, dim]`` laid out as
``[cos(c f_1), ..., cos(c f_k), sin(c f_1), ..., sin(c f_k)]`` with ``k = dim / 2``; the
wrappers in :mod:`scorelab.nets.denoisers` pass ``c_noise = log(sigma) / 4`` (Karras et al.
2022), a value of order one over the usual range of sigma.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from scorelab.nets._common import check_int

EmbeddingKind = Literal["fourier", "positional"]
EMBEDDINGS = ("fourier", "positional")


def _as_batch(c_noise: Tensor) -> Tensor:
    """``c_noise`` as ``[batch]``: a 0-d tensor becomes ``[1]``."""
    if not isinstance(c_noise, Tensor) or not c_noise.is_floating_point():
        raise ValueError(f"c_noise must be a floating tensor shaped [batch]; got {c_noise!r}")
    if c_noise.ndim > 1:
        raise ValueError(
            f"c_noise has shape {tuple(c_noise.shape)}; expected [batch] (one value per sample)"
        )
    return c_noise.reshape(-1)


def _check_even(dim: object) -> int:
    check_int(dim, "dim", 2)
    if dim % 2:
        raise ValueError(f"dim must be even (half cosines, half sines); got {dim}")
    return dim


class FourierEmbedding(nn.Module):
    """Random Fourier features ``[cos(2 pi f c), sin(2 pi f c)]``, ``f ~ N(0, scale^2)`` fixed
    (Tancik et al. 2020; Song et al. 2021, NCSN++).

    The frequencies are a buffer drawn at construction from ``torch.Generator().manual_seed(seed)``,
    so the same seed gives the same features; they are saved in the state dict.
    """

    freqs: Tensor

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        self.dim = _check_even(dim)
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be finite and > 0 (frequency std); got {scale}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, c_noise: Tensor) -> Tensor:
        """``[batch]`` -> ``[batch, dim]``."""
        c = _as_batch(c_noise)
        arg = c[:, None] * (2 * math.pi * self.freqs.to(c.dtype))
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class PositionalEmbedding(nn.Module):
    """Transformer sinusoidal features, frequencies ``max_positions^(-i/k)``, ``i < k = dim/2``
    (Vaswani et al. 2017; Ho et al. 2020)."""

    def __init__(self, dim: int, max_positions: int = 10000) -> None:
        super().__init__()
        self.dim = _check_even(dim)
        self.max_positions = check_int(max_positions, "max_positions", 2)

    def forward(self, c_noise: Tensor) -> Tensor:
        """``[batch]`` -> ``[batch, dim]``."""
        c = _as_batch(c_noise)
        k = self.dim // 2
        i = torch.arange(k, dtype=c.dtype, device=c.device)
        freqs = (1.0 / self.max_positions) ** (i / k)
        arg = c[:, None] * freqs
        return torch.cat([arg.cos(), arg.sin()], dim=1)


def noise_embedding(kind: str, dim: int, seed: int = 0) -> nn.Module:
    """The noise embedding named ``kind`` (``"fourier"`` or ``"positional"``)."""
    if kind == "fourier":
        return FourierEmbedding(dim, seed=seed)
    if kind == "positional":
        return PositionalEmbedding(dim)
    raise ValueError(f"unknown embedding {kind!r}; choose one of {', '.join(EMBEDDINGS)}")


class ClassEmbedding(nn.Module):
    """Learned class-label embedding with an extra "no label" token at index ``num_classes``.

    ``cond=None`` means "no label" for every sample; a label equal to ``num_classes`` marks
    a dropped label (label dropout for classifier-free guidance, Ho & Salimans 2022).
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = check_int(num_classes, "num_classes", 1)
        self.dim = check_int(dim, "dim", 1)
        self.table = nn.Embedding(num_classes + 1, dim)

    @property
    def null_label(self) -> int:
        """Index of the "no label" token."""
        return self.num_classes

    def forward(self, cond: Tensor | None, batch: int) -> Tensor:
        """Labels ``[batch]`` (or ``None``) -> ``[batch, dim]``."""
        device = self.table.weight.device
        if cond is None:
            cond = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        if not isinstance(cond, Tensor) or cond.is_floating_point() or cond.dtype == torch.bool:
            raise ValueError(
                f"cond must be an integer tensor of class labels shaped [batch]; got "
                f"{cond.dtype if isinstance(cond, Tensor) else type(cond)} (use "
                f"torch.as_tensor(labels, dtype=torch.long))"
            )
        if cond.shape != (batch,):
            raise ValueError(
                f"cond has shape {tuple(cond.shape)}; expected one label per sample, ({batch},)"
            )
        if cond.numel() and (cond.min() < 0 or cond.max() > self.num_classes):
            bad = cond[(cond < 0) | (cond > self.num_classes)][0].item()
            raise ValueError(
                f"cond holds label {bad} outside [0, {self.num_classes}]: labels are "
                f"0..{self.num_classes - 1}, and {self.num_classes} is the 'no label' token "
                f"(or pass cond=None)"
            )
        return self.table(cond.to(device=device, dtype=torch.long))


class ConditionEmbedding(nn.Module):
    """Noise embedding (+ class embedding) -> Linear, SiLU, Linear, SiLU: the mapping network of
    Karras et al. 2022 (EDM) and Dhariwal & Nichol 2021 (ADM), ``(c_noise, cond) -> [batch, dim]``.
    """

    def __init__(
        self,
        dim: int,
        embedding: str = "fourier",
        num_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.noise = noise_embedding(embedding, dim, seed)
        self.num_classes = num_classes
        self.label = None if num_classes is None else ClassEmbedding(num_classes, dim)
        self.map = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU())

    def forward(self, c_noise: Tensor, cond: Tensor | None = None) -> Tensor:
        """``c_noise`` ``[batch]``, ``cond`` ``[batch]`` or ``None`` -> ``[batch, dim]``."""
        e = self.noise(c_noise)
        if self.label is not None:
            e = e + self.label(cond, e.shape[0]).to(e.dtype)
        elif cond is not None:
            raise ValueError(
                "cond was given but the network has no class embedding; build it with "
                "num_classes=<number of classes>, or pass cond=None"
            )
        return self.map(e)
