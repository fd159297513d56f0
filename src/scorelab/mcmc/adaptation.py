"""Warm-up: step-size adaptation by dual averaging (per chain) and Stan-style mass windows.

The dual-averaging state is a tuple of ``[chains]`` tensors updated by pure tensor functions,
so the same code runs inside a compiled block of transitions and eagerly; a ``mask`` selects
the transitions (and chains) that adapt, so warm-up and sampling share one compiled graph.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from scorelab._utils import scalars

# Hoffman & Gelman (2014), Algorithm 5, with Stan's defaults.
GAMMA, T0, KAPPA = 0.05, 10.0, 0.75


class DAState(NamedTuple):
    """Dual-averaging state of ``log step_size``, one entry per chain (``[chains]`` each)."""

    log_step: Tensor  # the current iterate: the step size used in warm-up
    log_step_bar: Tensor  # the averaged iterate: the step size used after warm-up
    h_bar: Tensor  # running mean of (target - acceptance)
    mu: Tensor  # shrinkage point, log(10 * initial step)
    t: Tensor  # number of updates so far (float)


def da_init(step_size: Tensor) -> DAState:
    """Start (or restart, after a new mass matrix) from ``step_size`` ``[chains]``."""
    log_step = step_size.log()
    zero = torch.zeros_like(log_step)
    return DAState(log_step, log_step.clone(), zero, log_step + math.log(10.0), zero.clone())


def da_update(s: DAState, accept_prob: Tensor, target: float, mask: Tensor | bool) -> DAState:
    """One dual-averaging update from the acceptance probabilities ``[chains]``, applied where
    ``mask`` (a bool tensor, scalar or ``[chains]``, or a Python bool) is true; Hoffman & Gelman
    2014, eqs. (5)-(6). A Python bool (the eager runner's per-transition flag) skips the
    selection: the same numbers in fewer operations."""
    if mask is False:
        return s
    one, t0, gamma, minus_kappa, goal = scalars(s.t, 1.0, T0, GAMMA, -KAPPA, target)
    t = s.t + one
    eta = (t + t0).reciprocal()  # what 1 / (t + T0) computes
    h_bar = (one - eta) * s.h_bar + eta * (goal - accept_prob)
    log_step = s.mu - t.sqrt() / gamma * h_bar
    w = (minus_kappa * t.log()).exp()  # t^-kappa; pow rounds differently compiled and eager
    bar = w * log_step + (one - w) * s.log_step_bar
    new = DAState(log_step, bar, h_bar, s.mu, t)
    if mask is True:
        return new
    return DAState(*(torch.where(mask, a, b) for a, b in zip(new, s, strict=True)))


def da_step_size(s: DAState, adapting: Tensor | bool) -> Tensor:
    """The step sizes ``[chains]``: the iterate while ``adapting``, the average afterwards
    (``adapting`` a bool tensor or a Python bool, as in ``da_update``)."""
    if isinstance(adapting, bool):
        return (s.log_step if adapting else s.log_step_bar).exp()
    return torch.where(adapting, s.log_step, s.log_step_bar).exp()


class DualAveraging:
    """Dual averaging of one step size driven by scalar acceptance probabilities (a thin
    wrapper over ``da_update`` for one chain)."""

    def __init__(self, initial: float, target: float):
        self.target = target
        self.state = da_init(torch.tensor([float(initial)], dtype=torch.float64))

    def update(self, accept_prob: float) -> None:
        """Take in the acceptance probability of the last transition."""
        a = torch.tensor([float(accept_prob)], dtype=torch.float64)
        self.state = da_update(self.state, a, self.target, torch.tensor(True))

    @property
    def step_size(self) -> float:
        return math.exp(self.state.log_step.item())

    @property
    def final_step_size(self) -> float:
        return math.exp(self.state.log_step_bar.item())


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


# in the geometric mean a chain's variance counts as at least this fraction of the median
# chain's: a chain that did not move in a window (variance 0) would otherwise pull the pooled
# variance to 0; at the floor one such chain of 64 lowers it by 13%. Scales that differ
# between chains for real (the funnel's neck and mouth) stay above it
POOL_FLOOR = 1e-4


def geometric_pool(var: Tensor) -> Tensor:
    """``exp(mean_c log v_c)`` over the chains of variances ``[chains, dim]`` -> ``[dim]``,
    each ``v_c`` first raised to ``POOL_FLOOR`` times the median chain's."""
    floor = POOL_FLOOR * var.quantile(0.5, dim=0)
    return var.clamp_min(floor).clamp_min(torch.finfo(var.dtype).tiny).log().mean(0).exp()


def align_windows(windows: list[tuple[int, int]], block: int) -> list[tuple[int, int]]:
    """Move window boundaries down to multiples of ``block`` (the runner updates the metric
    between compiled blocks of transitions); windows that become empty are dropped."""
    out = []
    for start, end in windows:
        s, e = start // block * block, end // block * block
        if out and s < out[-1][1]:
            s = out[-1][1]
        if e > s:
            out.append((s, e))
    return out


class MassAdaptation:
    """Inverse mass from each slow window's draws: the chains' own variances pooled over
    chains by their geometric mean (diagonal ``[dim]``), or their own covariances averaged
    (``dense=True``, ``[dim, dim]``), or, with ``per_chain=True``, each chain's own diagonal
    ``[chains, dim]``.

    Within-chain, as Stan, NumPyro and BlackJAX estimate it per chain, so that chains sitting
    in different modes do not inflate the metric by the distance between the modes (two unit
    Gaussians 8 apart: the variance over all chains' draws is 17 along the axis that joins
    them, each chain's own about 1); pooled by default, so that one metric serves every
    chain with the pooled precision of all their draws. The diagonal pools in log space:
    variances are scales, and where chains see different scales (the funnel's neck and
    mouth: a coordinate's variance e^v differs by orders of magnitude between chains) their
    arithmetic mean is the widest chains' scale, too large for every other chain, and the
    geometric mean a typical one; where they agree (Gaussians) the two coincide up to the
    estimates' noise. One chain, or ``per_chain``: Stan's estimate exactly, chain by chain.
    """

    def __init__(self, warmup: int, dense: bool = False, block: int = 1, per_chain: bool = False):
        if dense and per_chain:
            raise ValueError("a per-chain mass matrix is diagonal; dense=True is pooled")
        self.windows = mass_windows(warmup)
        if block > 1:
            self.windows = align_windows(self.windows, block)
        self.dense, self.per_chain = dense, per_chain
        self._reset()

    def _reset(self) -> None:
        self.n, self.total, self.total_sq = 0, 0.0, 0.0  # n: draws per chain in the window

    def observe(self, t: int, x: Tensor) -> Tensor | None:
        """Record the positions of warm-up iterations ``t, t + 1, ...``: ``x`` is ``[chains,
        dim]`` (one iteration) or ``[n, chains, dim]`` (``n`` of them). When a window ends
        inside them, return Stan's regularized estimate ``n/(n+5) C + 1e-3 * 5/(n+5) I``
        (``C`` the within-chain covariance pooled over chains, ``n`` the window's draws over
        all chains; per chain: each chain's variances and its own draws), the latest one if
        several windows end, else ``None``."""
        xs = x.unsqueeze(0) if x.ndim == 2 else x  # [n, chains, dim]
        n, estimate = xs.shape[0], None
        while self.windows:
            start, end = self.windows[0]
            lo, hi = max(0, start - t), min(n, end - t)
            if lo >= n:
                break
            self._accumulate(xs[lo:hi])
            if t + hi < end:
                break
            self.windows.pop(0)
            estimate = self._estimate()
        return estimate

    def _accumulate(self, chunk: Tensor) -> None:
        """Add draws ``[n, chains, dim]``: per-chain sums, and squares (per chain; dense:
        outer products summed over chains)."""
        self.n += chunk.shape[0]
        self.total = self.total + chunk.sum(0)  # [chains, dim]
        if self.dense:
            flat = chunk.reshape(-1, chunk.shape[-1])
            sq = flat.mT @ flat
        else:
            sq = (chunk * chunk).sum(0)  # [chains, dim]
        self.total_sq = self.total_sq + sq

    def _estimate(self) -> Tensor:
        n, chains = self.n, self.total.shape[0]
        means = self.total / n  # [chains, dim]
        if self.dense:
            # sum over chains of sum_i (x_ci - m_c)(x_ci - m_c)^T = sum x x^T - n sum_c m_c
            # m_c^T, over chains (n - 1): the mean of the chains' unbiased covariances
            cov = (self.total_sq - n * means.mT @ means) / (chains * max(n - 1, 1))
            total = n * chains
        else:
            cov = (self.total_sq - n * means * means) / max(n - 1, 1)  # [chains, dim]
            total = n
            if not self.per_chain:  # the geometric mean over chains
                cov, total = geometric_pool(cov), n * chains
        self._reset()
        if self.dense:
            eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
            cov = 0.5 * (cov + cov.mT)
            return total / (total + 5.0) * cov + 1e-3 * 5.0 / (total + 5.0) * eye
        return total / (total + 5.0) * cov.clamp_min(0) + 1e-3 * 5.0 / (total + 5.0)
