"""Warm-up: step-size adaptation by dual averaging and Stan-style diagonal mass windows."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor


@dataclass
class DualAveraging:
    """Nesterov dual averaging of ``log step_size`` (Hoffman & Gelman 2014, Algorithm 5).

    Drives the chains' mean acceptance probability to ``target``; ``step_size`` is the current
    iterate, ``final_step_size`` the averaged one used after warm-up.
    """

    initial: float
    target: float
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75

    def __post_init__(self) -> None:
        self.mu = math.log(10 * self.initial)
        self.t, self.h_bar, self.log_step, self.log_step_bar = 0, 0.0, math.log(self.initial), 0.0

    def update(self, accept_prob: float) -> None:
        """Take in the mean acceptance probability of the last transition."""
        self.t += 1
        eta = 1 / (self.t + self.t0)
        self.h_bar = (1 - eta) * self.h_bar + eta * (self.target - accept_prob)
        self.log_step = self.mu - math.sqrt(self.t) / self.gamma * self.h_bar
        w = self.t ** (-self.kappa)
        self.log_step_bar = w * self.log_step + (1 - w) * self.log_step_bar

    @property
    def step_size(self) -> float:
        return math.exp(self.log_step)

    @property
    def final_step_size(self) -> float:
        return math.exp(self.log_step_bar) if self.t else self.step_size


def mass_windows(
    warmup: int, init_buffer: int = 75, term_buffer: int = 50, base: int = 25
) -> list[tuple[int, int]]:
    """Slow windows ``(start, end)`` of warm-up iterations over which the mass is estimated.

    Stan's schedule: a fast initial buffer, slow windows doubling in length, a fast terminal
    buffer; scaled to 15% / 75% / 10% of ``warmup`` when it is shorter than the defaults need.
    """
    if warmup < 20:
        return []
    if init_buffer + term_buffer + base > warmup:
        init_buffer, term_buffer = int(0.15 * warmup), int(0.1 * warmup)
        base = warmup - init_buffer - term_buffer
    windows, start, size = [], init_buffer, base
    end_slow = warmup - term_buffer
    while start < end_slow:
        # the last window absorbs what would be too short to stand alone
        end = end_slow if start + 3 * size > end_slow else start + size
        windows.append((start, end))
        start, size = end, 2 * size
    return windows


class MassAdaptation:
    """Diagonal inverse mass from the pooled variance of all chains over each slow window."""

    def __init__(self, warmup: int):
        self.windows = mass_windows(warmup)
        self._reset()

    def _reset(self) -> None:
        self.n, self.total, self.total_sq = 0, 0.0, 0.0

    def observe(self, t: int, x: Tensor) -> Tensor | None:
        """Record warm-up iteration ``t``'s positions ``[chains, dim]``; at a window's end return
        Stan's regularized estimate ``n/(n+5) var + 1e-3 * 5/(n+5)``, else ``None``."""
        if not self.windows or t < self.windows[0][0]:
            return None
        self.n += x.shape[0]
        self.total = self.total + x.sum(0)
        self.total_sq = self.total_sq + (x * x).sum(0)
        if t + 1 < self.windows[0][1]:
            return None
        self.windows.pop(0)
        mean = self.total / self.n
        var = (self.total_sq / self.n - mean**2).clamp_min(0) * self.n / max(self.n - 1, 1)
        n = self.n
        self._reset()
        return n / (n + 5.0) * var + 1e-3 * 5.0 / (n + 5.0)
