"""Noise-level schedules as data: a decreasing 1-D tensor of sigmas ending in 0.

Fixed formulas live on the processes (``Process.sigmas``); this module checks schedules that
come from elsewhere (a user's list, a stored or optimized schedule) before a sampler sees them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

LEVEL_SAMPLERS = ("langevin", "annealed_langevin")  # run at each listed level; no 0 needed


def check_sigmas(sigmas: object, sampler: str = "", dtype: torch.dtype = torch.float64) -> Tensor:
    """``sigmas`` as a 1-D tensor of ``dtype``, or a ``ValueError`` naming what is wrong: it
    must be finite, strictly decreasing, with at least one positive level, and end in 0
    (except for the Langevin samplers, which run at the listed levels)."""
    try:
        s = torch.as_tensor(sigmas, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"sigmas must be a 1-D sequence of numbers; got {sigmas!r}") from err
    if s.ndim != 1 or len(s) < (1 if sampler in LEVEL_SAMPLERS else 2):
        raise ValueError(
            f"sigmas must be a 1-D tensor of decreasing noise levels ending in 0, such as "
            f"[80.0, 10.0, 1.0, 0.0]; got shape {tuple(s.shape)}"
        )
    if not torch.isfinite(s).all():
        raise ValueError(f"sigmas must be finite; got {s.tolist()}")
    if (s < 0).any() or s[0] <= 0:
        raise ValueError(f"sigmas must be >= 0 and start above 0; got {s.tolist()}")
    steps = s[1:] - s[:-1]
    if (steps >= 0).any():
        i = int((steps >= 0).nonzero()[0])
        raise ValueError(
            f"sigmas must decrease strictly; sigmas[{i}] = {float(s[i]):.4g} <= "
            f"sigmas[{i + 1}] = {float(s[i + 1]):.4g}"
        )
    if sampler not in LEVEL_SAMPLERS and s[-1] != 0:
        raise ValueError(
            f"sigmas must end in 0 (the last step returns the denoised data); got last "
            f"{float(s[-1]):.4g}: append 0, e.g. torch.cat([sigmas, sigmas.new_zeros(1)])"
        )
    return s


def karras_grid(n: int, sigma_max: float, sigma_min: float, rho: float = 7.0) -> Tensor:
    """``n`` levels from ``sigma_max`` to ``sigma_min`` uniform in ``sigma^(1/rho)`` (Karras et
    al. 2022, eq. 5), float64."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    levels = (hi + t * (lo - hi)) ** rho
    levels[0], levels[-1] = sigma_max, sigma_min  # exactly, not through the power
    return levels


DEFAULT_HIGH = 3.0  # h, in RMS distances between two data points
DEFAULT_LOW = 0.4  # the last level is 0.4 / steps data standard deviations (0.04 at 10 steps)
DEFAULT_FLOOR = 0.002  # ... but not below 0.002 of them (EDM's sigma_min for unit-scale data)
# Below SMALL_BUDGET steps both ends rise with s = SMALL_BUDGET / steps: h by s and the last
# level by s^(4/3) (at 5 steps: h 6 RMS distances, last level 0.2 standard deviations). Few long
# steps must not start resolving the modes in one first-order jump from sigma_max; measured at
# NFE 5 on the ring / 64-D / 0.2-0.8 toy (benchmarks/results/samplers.md, "Small budgets").
SMALL_BUDGET = 10


def default_schedule(
    steps: int,
    *,
    sigma_max: float = 80.0,
    dim: int = 1,
    variance: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The default levels, a closed form of what ``optimized_sigmas`` finds on exact mixtures:
    ``steps`` levels from ``sigma_max`` uniform in ``u = log(sigma h / sqrt(sigma^2 + h^2))``
    (the log posterior std of a Gaussian of variance ``h^2`` seen at noise ``sigma``) down to
    ``0.4 / steps`` data standard deviations (not below 0.002 of them; raised below 10 steps,
    see the end), then 0, with
    ``h = 3 sqrt(2 dim variance)``, three times the RMS distance between two data points. Far
    above ``h`` the flow is close to linear and ``u`` hardly moves, so few levels go there
    (one of 10 from 80 on unit-variance 2-D data); below ``h`` they are geometric, as the
    optimizer places them, and the last one comes down as the steps get shorter. ``variance``
    is the data's mean per-coordinate variance (``trace(cov) / dim``); 1 for data normalized
    to unit scale. Below 10 steps (``SMALL_BUDGET``) both ``h`` and the last level rise, by
    ``s = 10 / steps`` and ``s^(4/3)``, so a small budget keeps its first steps above the
    modes' scale. Measured against the alternatives in ``benchmarks/results/samplers.md``."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int (number of noise levels); got {steps!r}")
    if not (math.isfinite(variance) and variance > 0):
        raise ValueError(f"variance must be a positive number (the data's); got {variance!r}")
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive int (numbers per sample); got {dim!r}")
    scale = math.sqrt(variance)
    s = max(1.0, SMALL_BUDGET / steps)  # 1 from 10 steps on: those levels are unchanged
    h = DEFAULT_HIGH * s * math.sqrt(2 * dim) * scale
    lo = max(DEFAULT_LOW * s ** (4 / 3) / steps, DEFAULT_FLOOR) * scale
    if not sigma_max > lo:
        raise ValueError(
            f"sigma_max = {sigma_max:g} must exceed the last level {lo:.3g} ({lo / scale:.3g} "
            f"data standard deviations at {steps} steps): raise sigma_max or the steps"
        )

    def u(sigma: float) -> float:
        return -0.5 * math.log(sigma**-2 + h**-2)

    us = torch.linspace(u(sigma_max), u(lo), steps, dtype=torch.float64)
    levels = (torch.exp(-2 * us) - h**-2).rsqrt()
    levels[0] = sigma_max  # exactly, not through the round trip
    if steps > 1:
        levels[-1] = lo
    return torch.cat([levels, levels.new_zeros(1)]).to(dtype)


@torch.no_grad()
def optimized_sigmas(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    steps: int,
    *,
    sigma_max: float,
    sigma_min: float = 0.002,
    grid: int = 100,
    substeps: int = 3,
    fine_scale: float | None = None,
) -> Tensor:
    """A schedule of ``steps`` levels (then 0) fitted to a model, by dynamic programming over a
    fine grid as in GITS (Chen et al. 2024): a teacher trajectory of the probability-flow ODE
    from ``x`` (prior draws at ``sigma_max``) is solved finely (``dpmpp_3m`` on ``substeps``
    levels per interval of a ``grid``-level Karras grid); the cost of a jump between two grid
    levels is the RMS error of one Euler (DDIM) step against the teacher, and of ending at a
    level the error of ``D`` there against the teacher's end; the cheapest path of ``steps``
    evaluations wins (the last level is chosen too). Costs ``(grid - 1) * substeps + 1``
    evaluations on ``x``'s batch; returns float64 on the CPU, for ``diffusion.sample(...,
    sigmas=...)``.

    ``fine_scale`` (a variance, in the data's units squared): the errors of a jump landing at
    ``sigma`` are weighted by ``1 / sqrt(1 + sigma^2 / fine_scale)``, the factor by which the
    flow of a Gaussian of that variance shrinks them on its way to 0, so that structure of
    that size (narrow modes) gets steps at small sigma. ``None``: unweighted, as in GITS.
    """
    from scorelab.diffusion.samplers import dpmpp_3m  # samplers do not import schedules

    if not isinstance(steps, int) or not 1 <= steps < grid:
        raise ValueError(f"steps must be an int from 1 to grid - 1 = {grid - 1}; got {steps!r}")
    levels = karras_grid(grid, sigma_max, sigma_min)  # [grid]
    fine = karras_grid((grid - 1) * substeps + 1, sigma_max, sigma_min)
    fine[::substeps] = levels  # the grid levels lie on the fine path exactly
    xs, ds = [x], []  # the teacher's states and denoised values at the grid levels

    def record(info: dict) -> None:
        if info["i"] % substeps == 0:
            ds.append(info["denoised"])
        if (info["i"] + 1) % substeps == 0:
            xs.append(info["x"])

    dpmpp_3m(denoiser, x, fine.to(x), callback=record)
    ds.append(denoiser(xs[-1], levels[-1].to(x).expand(x.shape[0])))
    xt, dt = torch.stack(xs).flatten(1).double(), torch.stack(ds).flatten(1).double()  # [grid, B*d]
    scale = math.sqrt(x[0].numel())
    cost = torch.full((grid, grid), math.inf, dtype=torch.float64)
    for i in range(grid - 1):  # Euler from level i to every later level j
        ratio = (levels[i + 1 :] / levels[i])[:, None]
        pred = dt[i] + ratio * (xt[i] - dt[i])  # [grid - i - 1, B*d]
        cost[i, i + 1 :] = (pred - xt[i + 1 :]).norm(dim=1) / (math.sqrt(x.shape[0]) * scale)
    if fine_scale is not None:
        cost = cost / torch.sqrt(1 + levels**2 / fine_scale)[None, :]
    final = (dt - dt[-1]).norm(dim=1) / (math.sqrt(x.shape[0]) * scale)  # D at level j as output
    # best[k, j]: the cheapest way from level 0 to level j in k jumps
    best = torch.full((steps, grid), math.inf, dtype=torch.float64)
    prev = torch.zeros((steps, grid), dtype=torch.long)
    best[0, 0] = 0.0
    for k in range(1, steps):
        total = best[k - 1][:, None] + cost  # [from, to]
        best[k], prev[k] = total.min(dim=0)
    j = int(torch.argmin(best[steps - 1] + final))
    path = [j]
    for k in range(steps - 1, 0, -1):
        j = int(prev[k, j])
        path.append(j)
    return torch.cat([levels[path[::-1]], levels.new_zeros(1)])
