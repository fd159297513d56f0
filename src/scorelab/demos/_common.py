"""What every demo shares: its result record, picture writers (PNG and animated GIF), seeds."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.animation import PillowWriter
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Pictures are written at this resolution; GIF frames at a lower one to stay small.
PNG_DPI = 100
GIF_DPI = 70


@dataclass
class DemoResult:
    """What a demo measured and wrote.

    ``numbers`` holds the measured quantities its claim rests on (floats, lists of floats,
    strings), under stable keys the tests read; ``claim`` states the claim in one sentence with
    the measured numbers filled in; ``table`` is an optional ``(header, rows)`` shown in the
    gallery; ``paths`` are the files written (PNG first, then GIFs).
    """

    name: str
    claim: str
    numbers: dict[str, Any]
    paths: list[Path] = field(default_factory=list)
    table: tuple[Sequence[str], Sequence[Sequence[object]]] | None = None
    seconds: float = 0.0

    @property
    def pictures(self) -> list[Path]:
        """The PNG and GIF files written, in order."""
        return [p for p in self.paths if p.suffix in (".png", ".gif")]


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: every demo is reproducible."""
    return torch.Generator().manual_seed(seed)


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with an Agg canvas (so it can be saved and animated headless)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=PNG_DPI)
    return path


def save_gif(
    fig: Figure,
    update: Callable[[int], None],
    frames: int,
    path: Path,
    fps: int = 8,
    quick: bool = False,
) -> Path:
    """Write an animated GIF: ``update(i)`` changes ``fig``'s artists for frame ``i`` of
    ``frames`` (matplotlib's ``PillowWriter``); the last frame is held for half a second.
    ``quick`` keeps every third frame (and the last), for tests.

    The layout is computed once, on frame 0, then frozen: re-running the layout engine and tick
    placement on every frame costs several times the drawing itself, so animated axes should
    have no tick labels (see ``bare``) and ``update`` should move artists rather than redraw.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    order = list(range(0, frames, 3 if quick else 1))
    if order[-1] != frames - 1:
        order.append(frames - 1)
    update(0)
    fig.canvas.draw()
    fig.set_layout_engine("none")
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, str(path), dpi=GIF_DPI):
        for i in order:
            update(i)
            writer.grab_frame()
        for _ in range(max(1, fps // 2)):  # hold the final picture
            writer.grab_frame()
    return path


def bare(*axes: Axes) -> None:
    """Remove ticks and tick labels (animated panels: they cost most of a frame's drawing)."""
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])


def data_uri(path: Path) -> str:
    """A ``data:image/png|gif;base64,...`` URI for a picture file (for the gallery page)."""
    kind = {".png": "png", ".gif": "gif"}.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: only .png and .gif pictures can be embedded")
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def fmt(value: float, digits: int = 3) -> str:
    """A number to ``digits`` significant digits for claims and tables."""
    return f"{value:.{digits}g}"
