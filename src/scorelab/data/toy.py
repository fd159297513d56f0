"""Two-dimensional toy sets, the usual pictures of score-based modeling (Grathwohl et al. 2019).

Every set is drawn from a ``torch.Generator`` (the same seed gives the same points), is
roughly zero-mean and spans a few units:

- ``ring``: 8 equal Gaussians (std ``noise``) on a circle of radius 4, as
  ``scorelab.densities.make("ring")``;
- ``moons``: two interleaved half circles of radius 2 (scikit-learn's ``make_moons``, scaled 2x);
- ``swiss_roll``: the 2-D Swiss roll ``t (cos t, sin t) / 5``, ``t`` in ``[1.5 pi, 4.5 pi]``,
  centered;
- ``checkerboard``: uniform on the 8 dark squares of a 4x4 board on ``[-4, 4]^2``;
- ``circles``: two concentric circles of radius 2 and 4, half the points on each;
- ``spiral``: two interleaved spiral arms ``+-(t cos t, t sin t) / 3``, ``t`` in ``[0, 3 pi]``.

``noise`` is the standard deviation of isotropic Gaussian noise added to every point (for the
ring it is the std of each Gaussian).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scorelab._utils import rand, randn

TOY_NAMES: tuple[str, ...] = ("ring", "moons", "swiss_roll", "checkerboard", "circles", "spiral")

# Default noise std per set, in the set's own units.
DEFAULT_NOISE: dict[str, float] = {
    "ring": 0.5,
    "moons": 0.1,
    "swiss_roll": 0.1,
    "checkerboard": 0.0,
    "circles": 0.1,
    "spiral": 0.1,
}


def _choice(n: int, k: int, generator, dtype, device) -> Tensor:
    """``n`` uniform draws from ``{0, ..., k-1}`` (int64)."""
    return (rand((n,), generator, dtype, device) * k).long().clamp_max(k - 1)


def _ring(n, generator, dtype, device) -> Tensor:
    angle = 2 * math.pi / 8 * _choice(n, 8, generator, dtype, device).to(dtype)
    return 4.0 * torch.stack([torch.cos(angle), torch.sin(angle)], -1)


def _moons(n, generator, dtype, device) -> Tensor:
    lower = _choice(n, 2, generator, dtype, device).bool()
    t = math.pi * rand((n,), generator, dtype, device)
    upper_x, upper_y = torch.cos(t), torch.sin(t)
    x = torch.where(lower, 1 - upper_x, upper_x)
    y = torch.where(lower, 0.5 - upper_y, upper_y)
    # the two moons' centroid is (0.5, 0.25); center it and double the scale
    return 2.0 * torch.stack([x - 0.5, y - 0.25], -1)


def _swiss_roll(n, generator, dtype, device) -> Tensor:
    t = 1.5 * math.pi * (1 + 2 * rand((n,), generator, dtype, device))
    # E[t cos t] = 2 and E[t sin t] = 2 / (3 pi) for t ~ U[1.5 pi, 4.5 pi]: subtract them
    x, y = t * torch.cos(t) - 2.0, t * torch.sin(t) - 2 / (3 * math.pi)
    return torch.stack([x, y], -1) / 5.0


def _checkerboard(n, generator, dtype, device) -> Tensor:
    col = _choice(n, 4, generator, dtype, device)
    row = 2 * _choice(n, 2, generator, dtype, device) + col % 2  # dark squares: row + col even
    u = rand((n, 2), generator, dtype, device)
    return torch.stack([-4 + 2 * col.to(dtype), -4 + 2 * row.to(dtype)], -1) + 2 * u


def _circles(n, generator, dtype, device) -> Tensor:
    radius = 2.0 + 2.0 * _choice(n, 2, generator, dtype, device).to(dtype)
    angle = 2 * math.pi * rand((n,), generator, dtype, device)
    return radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], -1)


def _spiral(n, generator, dtype, device) -> Tensor:
    sign = 1 - 2 * _choice(n, 2, generator, dtype, device).to(dtype)
    # t = 3 pi sqrt(u): arc length grows like t^2, so points are spread evenly along each arm
    t = 3 * math.pi * rand((n,), generator, dtype, device).sqrt()
    return sign[:, None] * torch.stack([t * torch.cos(t), t * torch.sin(t)], -1) / 3.0


_MAKERS = {
    "ring": _ring,
    "moons": _moons,
    "swiss_roll": _swiss_roll,
    "checkerboard": _checkerboard,
    "circles": _circles,
    "spiral": _spiral,
}


def toy(
    name: str,
    n: int,
    *,
    generator: torch.Generator | None = None,
    noise: float | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` points ``[n, 2]`` of the toy set ``name`` (one of ``TOY_NAMES``; see module doc).

    ``noise`` defaults to ``DEFAULT_NOISE[name]``; the result is float32 unless ``dtype`` says
    otherwise.
    """
    if name not in _MAKERS:
        raise ValueError(f"unknown toy set {name!r}; choose one of {', '.join(TOY_NAMES)}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int (number of points); got {n!r}")
    noise = DEFAULT_NOISE[name] if noise is None else noise
    if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ValueError(
            f"noise must be a finite number >= 0 (a standard deviation); got {noise!r}"
        )
    dtype = torch.get_default_dtype() if dtype is None else dtype
    device = torch.device(device or "cpu")
    x = _MAKERS[name](n, generator, dtype, device)
    if noise > 0:
        x = x + noise * randn((n, 2), generator, dtype, device)
    return x
