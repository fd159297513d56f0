"""MCMC pictures: traces, autocorrelation, and draws over the target's density."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from scorelab.densities.base import Density
from scorelab.mcmc.diagnostics import autocorrelation


def density_grid(
    density: Density, lo: np.ndarray, hi: np.ndarray, n: int = 200
) -> tuple[np.ndarray, ...]:
    """``exp(log_prob)`` on an ``n``-point (1-D) or ``n x n`` (2-D) grid over ``[lo, hi]``."""
    axes = [
        torch.linspace(float(a), float(b), n, dtype=torch.float64)
        for a, b in zip(lo, hi, strict=True)
    ]
    if density.dim == 1:
        grid = axes[0][:, None]
        return axes[0].numpy(), density.log_prob(grid).exp().numpy()
    xx, yy = torch.meshgrid(axes[0], axes[1], indexing="xy")
    pts = torch.stack([xx, yy], -1).reshape(-1, 2)
    z = density.log_prob(pts).exp().reshape(n, n)
    return xx.numpy(), yy.numpy(), z.numpy()


def _bounds(x: np.ndarray, pad: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(x, 0.001, axis=0), np.quantile(x, 0.999, axis=0)
    span = np.maximum(hi - lo, 1e-6)
    return lo - pad * span, hi + pad * span


def plot_samples_over_density(
    ax: Axes, density: Density | None, x: np.ndarray, title: str = "", max_points: int = 4000
) -> None:
    """1-D: histogram against the normalized density; 2-D: scatter over its contours."""
    lo, hi = _bounds(x)
    if x.shape[1] == 1:
        ax.hist(x[:, 0], bins=80, range=(lo[0], hi[0]), density=True, alpha=0.5, label="draws")
        if density is not None:
            grid, p = density_grid(density, lo, hi, 400)
            if not density.normalized:  # normalize on the plotted range
                p = p / np.trapezoid(p, grid)
            ax.plot(grid, p, "k", lw=1.5, label="density")
        ax.legend(frameon=False)
    else:
        if density is not None and density.dim == 2:
            xx, yy, z = density_grid(density, lo, hi)
            ax.contour(xx, yy, z, levels=8, colors="k", linewidths=0.8)
        step = max(1, len(x) // max_points)
        ax.scatter(x[::step, 0], x[::step, 1], s=2, alpha=0.4)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
    ax.set_title(title)


def plot_mcmc(
    samples: Tensor,
    density: Density | None = None,
    title: str = "",
    coords: int = 3,
    max_lag: int = 100,
) -> Figure:
    """Traces of a few chains, autocorrelation, and (1-D/2-D targets) draws over the density."""
    s = samples.detach().double().cpu().numpy()  # [chains, draws, dim]
    dim = s.shape[2]
    k = min(coords, dim)
    show_density = dim <= 2
    fig = Figure(figsize=(4.2 * (2 + show_density), 2.4 * k), layout="constrained")
    grid = fig.add_gridspec(k, 2 + show_density)
    acf = autocorrelation(samples[:, :, :k], max_lag=min(max_lag, s.shape[1] - 1)).mean(0)
    for i in range(k):
        ax = fig.add_subplot(grid[i, 0])
        for c in range(min(4, s.shape[0])):
            ax.plot(s[c, :, i], lw=0.6)
        ax.set_ylabel(f"x[{i}]")
        ax.set_title("traces (4 chains)" if i == 0 else "")
        ax = fig.add_subplot(grid[i, 1])
        ax.bar(np.arange(acf.shape[0]), acf[:, i].numpy(), width=1.0)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title("autocorrelation (mean over chains)" if i == 0 else "")
    if show_density:
        ax = fig.add_subplot(grid[:, 2])
        plot_samples_over_density(ax, density, s.reshape(-1, dim), "draws over the density")
    fig.suptitle(title)
    return fig
