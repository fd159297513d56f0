"""Pictures of generated samples: image grids and 2-D scatter plots."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor


def draw_grid(ax: Axes, images: Tensor, nrow: int | None = None, title: str = "") -> None:
    """Tile ``images`` ``[n, C, H, W]`` with values in [0, 1] into one picture on ``ax``."""
    x = images.detach().float().clamp(0, 1).cpu().numpy()
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    canvas = np.ones((ncol * (h + 1) + 1, nrow * (w + 1) + 1, c))
    for i in range(n):
        r, q = divmod(i, nrow)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = x[
            i
        ].transpose(1, 2, 0)
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray_r" if c == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")  # fmt: skip
    ax.set_axis_off()
    ax.set_title(title)


def image_grid(images: Tensor, nrow: int | None = None, title: str = "") -> Figure:
    """A figure holding one grid of ``images`` ``[n, C, H, W]`` in [0, 1]."""
    fig = Figure(figsize=(6, 6), layout="constrained")
    draw_grid(fig.add_subplot(), images, nrow, title)
    return fig


def scatter_2d(ax: Axes, points: Tensor, reference: Tensor | None = None, title: str = "") -> None:
    """Generated 2-D ``points`` over grey ``reference`` data."""
    if reference is not None:
        r = reference.detach().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=2, c="0.75", label="data")
    p = points.detach().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=2, c="C0", alpha=0.6, label="samples")
    ax.set_aspect("equal")
    ax.legend(frameon=False, markerscale=4, loc="upper right")
    ax.set_title(title)
