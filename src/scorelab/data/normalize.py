"""The affine map between data units and model units, recorded so samples map back exactly.

``forward(x) = (x - shift) / scale`` and ``inverse(y) = y * scale + shift``, computed in float64
and returned in the input's dtype. ``shift`` and ``scale`` hold one value (global, for images)
or one per feature (axis 1 of ``x``, for vectors). ``to_dict``/``from_dict`` give JSON-safe
plain lists, to be saved beside a checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scorelab._utils import as_tensor, check_finite

KINDS = ("identity", "standardize", "unit_range")


@dataclass(frozen=True)
class Normalization:
    """``y = (x - shift) / scale``: data units ``x`` to model units ``y``, and back exactly.

    ``kind`` says how it was made: ``"standardize"`` (per-feature zero mean, unit variance),
    ``"unit_range"`` (the range ``[lo, hi]`` onto ``[-1, 1]``) or ``"identity"``.
    """

    kind: str
    shift: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        shift = tuple(float(v) for v in self.shift)
        scale = tuple(float(v) for v in self.scale)
        if not shift or len(shift) != len(scale):
            raise ValueError(
                f"shift and scale must be non-empty and of equal length (one value, or one per "
                f"feature); got {len(shift)} and {len(scale)} values"
            )
        if not all(math.isfinite(v) for v in shift):
            raise ValueError(f"shift must be finite; got {shift}")
        if not all(math.isfinite(v) and v > 0 for v in scale):
            raise ValueError(f"scale must be finite and > 0; got {scale}")
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "scale", scale)

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def identity(cls) -> Normalization:
        """The identity map (data already in model units)."""
        return cls("identity", (0.0,), (1.0,))

    @classmethod
    def standardize(cls, x: Tensor) -> Normalization:
        """Per-feature ``(x - mean) / std`` of vectors ``[N, D]``; a constant feature gets std 1."""
        t = as_tensor(x, "x", torch.float64)
        if t.ndim != 2 or t.shape[0] == 0:
            raise ValueError(
                f"standardize needs vectors shaped [N, D] with N >= 1; got shape {tuple(t.shape)} "
                "(for images use Normalization.to_unit_range)"
            )
        check_finite(t, "x")
        mean = t.mean(0)
        std = t.std(0, correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return cls("standardize", tuple(mean.tolist()), tuple(std.tolist()))

    @classmethod
    def to_unit_range(
        cls, x: Tensor | None = None, lo: float | None = None, hi: float | None = None
    ) -> Normalization:
        """Map the global range ``[lo, hi]`` onto ``[-1, 1]``; ``lo``/``hi`` default to x's min/max.

        Pass the known pixel range for images (0, 255 for 8-bit files; 0, 16 for the digits) so
        that the map does not depend on which pixels happen to occur.
        """
        if lo is None or hi is None:
            if x is None:
                raise ValueError("to_unit_range needs x, or both lo and hi (the value range)")
            t = as_tensor(x, "x", torch.float64)
            if t.numel() == 0:
                raise ValueError("x is empty; pass data or both lo and hi")
            check_finite(t, "x")
            lo = float(t.min()) if lo is None else lo
            hi = float(t.max()) if hi is None else hi
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(
                f"the value range must be finite with hi > lo; got lo={lo}, hi={hi} "
                "(constant data has no range: pass lo and hi explicitly)"
            )
        return cls("unit_range", ((lo + hi) / 2,), ((hi - lo) / 2,))

    # -- the map --------------------------------------------------------------------------
    @property
    def lo(self) -> tuple[float, ...]:
        """Data value(s) mapped to -1."""
        return tuple(s - c for s, c in zip(self.shift, self.scale, strict=True))

    @property
    def hi(self) -> tuple[float, ...]:
        """Data value(s) mapped to +1."""
        return tuple(s + c for s, c in zip(self.shift, self.scale, strict=True))

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(
                f"x must be a floating torch.Tensor; got {getattr(x, 'dtype', type(x))}"
            )
        d = len(self.shift)
        shape: tuple[int, ...] = ()
        if d > 1:
            if x.ndim < 2 or x.shape[1] != d:
                raise ValueError(
                    f"x has shape {tuple(x.shape)} but this normalization has {d} per-feature "
                    f"values: expected [N, {d}, ...] (the data it was fitted on)"
                )
            shape = (d,) + (1,) * (x.ndim - 2)
        shift = torch.tensor(self.shift, dtype=torch.float64, device=x.device).reshape(shape)
        scale = torch.tensor(self.scale, dtype=torch.float64, device=x.device).reshape(shape)
        return shift, scale

    def forward(self, x: Tensor) -> Tensor:
        """Data units to model units: ``(x - shift) / scale``."""
        shift, scale = self._params(x)
        return ((x.double() - shift) / scale).to(x.dtype)

    def inverse(self, y: Tensor, *, clamp: bool = False) -> Tensor:
        """Model units back to data units: ``y * scale + shift``; ``clamp`` clips to ``[lo, hi]``.

        ``clamp`` is for ``unit_range`` maps (e.g. generated pixels outside 0..255).
        """
        if clamp and self.kind != "unit_range":
            raise ValueError(
                f"clamp=True needs a unit_range normalization (a known value range); this one is "
                f"{self.kind!r}: pass clamp=False"
            )
        shift, scale = self._params(y)
        x = y.double() * scale + shift
        if clamp:
            x = torch.minimum(torch.maximum(x, shift - scale), shift + scale)
        return x.to(y.dtype)

    __call__ = forward

    # -- saving ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe ``{"kind", "shift", "scale"}`` (plain floats in lists)."""
        return {"kind": self.kind, "shift": list(self.shift), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        """Inverse of ``to_dict``."""
        missing = [k for k in ("kind", "shift", "scale") if not isinstance(d, dict) or k not in d]
        if missing:
            raise ValueError(
                f"normalization dict is missing {', '.join(missing)}; expected the output of "
                "Normalization.to_dict() with keys kind, shift, scale"
            )
        return cls(d["kind"], tuple(d["shift"]), tuple(d["scale"]))
