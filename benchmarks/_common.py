"""Helpers shared by the benchmark scripts: optional peers, threads, machine and versions."""

from __future__ import annotations

import contextlib
import datetime
import importlib
import math
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch


def import_peer(name: str) -> ModuleType | None:
    """``import name``, or ``None`` with a message when the peer is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        print(f"skipping {name}: not installed ({err}); pip install jax blackjax numpyro")
        return None


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (``None``: leave torch's setting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class CompileClock:
    """Seconds JAX spends tracing, lowering and compiling, from ``jax.monitoring`` events."""

    seconds: float = 0.0
    registered: bool = field(default=False, repr=False)

    def listen(self, jax: ModuleType) -> None:
        if not self.registered:
            jax.monitoring.register_event_duration_secs_listener(self._record)
            self.registered = True

    def _record(self, event: str, duration: float, **_: Any) -> None:
        if event.startswith("/jax/core/compile/"):
            self.seconds += duration


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    """The CPU, its cores, and the CUDA GPU if torch sees one."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{cpu_name()}, {os.cpu_count()} CPU cores, {gpu}"


def versions(peers: dict[str, ModuleType], names: tuple[str, ...]) -> str:
    """``torch 2.x, jax 0.y, ...``; peers that are missing say so."""
    found = {"torch": torch.__version__} | {
        n: getattr(mod, "__version__", "?") for n, mod in peers.items()
    }
    shown = ", ".join(f"{n} {found.get(n, 'not installed')}" for n in ("torch", *names))
    return f"Python {platform.python_version()}, {shown}"


def fmt(value: float) -> str:
    """Three significant digits, thousands separated above 100, "-" for NaN or inf."""
    if not math.isfinite(value):
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def emit(text: str, out: Path | None) -> None:
    """Print the report, or write it to ``out`` (creating its folder)."""
    if out is None:
        print(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


def run_meta(quick: bool, start: float, load_start: float, **extra: Any) -> dict[str, Any]:
    """What every report's header states about its run: flags, date, minutes since ``start``
    (a ``time.perf_counter()``), and the load average at the start and now."""
    return {
        "args": " --quick" if quick else "",
        "date": datetime.date.today().isoformat(),
        "minutes": (time.perf_counter() - start) / 60,
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        **extra,
    }
