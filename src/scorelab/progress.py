"""Progress of long loops, one rule for every layer: a tqdm bar on a terminal, and a plain
line every ``INTERVAL_S`` seconds otherwise (a log file, a batch job), so redirected output
still says how far a run is and when it will end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

import tqdm.auto
import tqdm.autonotebook
import tqdm.std

INTERVAL_S = 20.0  # seconds between plain progress lines when the stream is not a terminal


def _duration(seconds: float) -> str:
    """``75.0`` -> ``"1m15s"``."""
    s = round(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s % 60:02d}s" if m else f"{s}s"


class Lines:
    """A tqdm-like counter that writes ``desc: n/total unit (pct), postfix, rate, ETA`` lines,
    at most one per ``interval`` seconds of ``clock``, and a last one on close if it wrote any."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int, stream: IO[str],
                 interval: float, clock: Callable[[], float]) -> None:  # fmt: skip
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.n = self.initial = initial
        self.interval, self.clock = interval, clock
        self.start = self.last = clock()
        self.postfix = ""
        self.lines = 0
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self._line(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def write(self, text: str) -> None:
        """A message, to stdout as ``tqdm.write`` does."""
        print(text, flush=True)

    def close(self) -> None:
        if not self.closed and self.lines:
            self._line(self.clock())
        self.closed = True

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc}: {done} {self.unit}s"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if self.postfix:
            parts.append(self.postfix)
        parts.append(f"{rate:.3g} {self.unit}/s, elapsed {_duration(elapsed)}")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {_duration((self.total - self.n) / rate)}")
        print(", ".join(parts), file=self.stream, flush=True)
        self.last = now
        self.lines += 1


def _interactive(stream: IO[str]) -> bool:
    """A terminal, or a notebook (where tqdm.auto draws a widget)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or tqdm.autonotebook.tqdm is not tqdm.std.tqdm


def progress(
    total: int | None,
    desc: str,
    *,
    unit: str = "it",
    initial: int = 0,
    show: bool | None = None,
    stream: IO[str] | None = None,
    interval: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """A progress counter (``update``, ``set_postfix``, ``write``, ``close``, context manager):
    a tqdm bar on a terminal, plain ``Lines`` every ``interval`` seconds (default
    ``INTERVAL_S``) when ``stream`` (default stderr) is not one; ``show=False`` shows nothing."""
    stream = sys.stderr if stream is None else stream
    if show is False or _interactive(stream):
        return tqdm.auto.tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream,
                              disable=show is False)  # fmt: skip
    return Lines(total, desc, unit, initial, stream, INTERVAL_S if interval is None else interval,
                 clock)  # fmt: skip
