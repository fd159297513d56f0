"""ChEES-HMC: jittered HMC whose trajectory length is adapted across many chains.

Hoffman, Radul & Sountsov (2021), "An Adaptive MCMC Scheme for Setting Trajectory Lengths in
Hamiltonian Monte Carlo", AISTATS (PMLR 130). Each transition integrates for a jittered length
``t = u T`` (``u`` uniform on (0, 1], a Halton sequence in warm-up as in the paper), i.e.
``ceil(u T / h)`` leapfrog steps, then a Metropolis-Hastings correction: for fixed ``(T, h, u)``
that is plain HMC, so any ``u`` drawn independently of the state leaves the target invariant.

In warm-up, ``T`` climbs the ChEES criterion (eq. 3: the change in the estimator of the expected
square, ``E[(|x' - E x|^2 - |x - E x|^2)^2] / 4``): its gradient with respect to ``log T`` is
estimated from all chains at once (eq. 5-6), ``u T (|x' - m'|^2 - |x - m|^2) <x' - m', v'>``
per chain (``m``, ``m'`` the chains' means, ``v'`` the velocity at the proposal), averaged with
the acceptance probabilities as weights, and fed to Adam on ``log T`` (``beta1 = 0``,
``beta2 = 0.95``, learning rate 0.025, as the paper), whose iterates are averaged with weights
``t^-1/2``. Norms are measured in the metric's whitened coordinates (so a mass matrix does not
let a few wide coordinates dominate); ``<dx, p>`` needs no whitening (it is metric invariant).

The step size comes from the runner's dual averaging (one per chain, as for every kernel here)
to a mean acceptance of 0.651, the value the paper targets (optimal for HMC in high dimension,
Beskos et al. 2013); the paper averages harmonically over chains with one shared step size,
which the runner's per-chain adaptation replaces: each chain's own average is driven to 0.651.
With per-chain step sizes, chains take ``ceil(u T / h_c)`` steps; those that finish early leave
the batch (no gradient spent), so ``Info.grad_evals`` holds the real per-chain counts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scorelab._utils import rand
from scorelab.densities.base import Density
from scorelab.mcmc.kernels import (
    KERNELS,
    Info,
    Kernel,
    State,
    hamiltonian_correct,
    leapfrog,
)
from scorelab.mcmc.metric import Metric, as_metric

TARGET_ACCEPT = 0.651  # Hoffman et al. 2021, Sec. 4 (Beskos et al. 2013's optimum for HMC)
MAX_LEAPFROG = 1000  # at most this many leapfrog steps per transition
LEARNING_RATE, BETA2, DECAY = 0.025, 0.95, 0.5  # Adam on log T, and the iterate averaging
MAX_LOG_UPDATE = 0.35  # one warm-up transition changes T by at most a factor e^0.35 ~ 1.4


def halton(index: int, base: int = 2) -> float:
    """The ``index``-th (1-based) element of the van der Corput / Halton sequence in (0, 1)."""
    result, f = 0.0, 1.0 / base
    while index > 0:
        result += f * (index % base)
        index //= base
        f /= base
    return result


def n_steps(trajectory_length: float | None, jitter: Tensor, step_size: Tensor) -> Tensor:
    """Leapfrog steps per chain: ``ceil(u T / h)``, between 1 and ``MAX_LEAPFROG``
    (``trajectory_length=None``: one step)."""
    if trajectory_length is None:
        return torch.ones_like(step_size, dtype=torch.long)
    n = torch.ceil(jitter * trajectory_length / step_size)
    return torch.nan_to_num(n, nan=1.0).clamp(1, MAX_LEAPFROG).long()


def leapfrog_counts(
    target: Density, state: State, p: Tensor, h: Tensor, metric: Metric, n: Tensor
) -> tuple[State, Tensor]:
    """``n[c]`` leapfrog steps of size ``h[c]`` for each chain ``c``: the chains still moving
    are gathered at each step, so a chain that is done costs no gradient."""
    x, lp, score = state.x, state.log_prob, state.score
    for i in range(int(n.max())):
        rows = (n > i).nonzero()[:, 0] if bool((n <= i).any()) else None
        if rows is None:
            sub, p = leapfrog(target, State(x, lp, score), p, h, metric, 1)
            x, lp, score = sub.x, sub.log_prob, sub.score
            continue
        sub_state = State(x[rows], lp[rows], score[rows])
        sub, p_rows = leapfrog(target, sub_state, p[rows], h[rows], metric, 1)
        x, lp = x.index_copy(0, rows, sub.x), lp.index_copy(0, rows, sub.log_prob)
        score, p = score.index_copy(0, rows, sub.score), p.index_copy(0, rows, p_rows)
    return State(x, lp, score), p


def _whitened_sq_norm(metric: Metric, d: Tensor) -> Tensor:
    """``|d|^2`` in the metric's whitened coordinates, ``d^T M d`` (``M`` the mass), per row."""
    w = d @ metric.factor.mT if metric.dense else d * metric.factor
    return (w * w).sum(-1)


def chees_gradient(
    metric: Metric,
    x0: Tensor,
    x1: Tensor,
    p1: Tensor,
    accept_prob: Tensor,
    ok: Tensor,
    length: Tensor,
) -> Tensor:
    """Per-chain terms of the ChEES gradient with respect to ``log T`` (Hoffman et al. 2021,
    eq. 6): ``t (|x1 - m1|^2 - |x0 - m0|^2) <x1 - m1, p1>``, ``t = u T`` the jittered length,
    ``m0`` the chains' mean start, ``m1`` the acceptance-weighted mean proposal. Chains not
    ``ok`` (diverged, non-finite) get 0; the adapter averages with ``accept_prob`` weights."""
    w = torch.where(ok, accept_prob, torch.zeros_like(accept_prob))
    x1_safe = torch.where(ok[:, None], x1, torch.zeros_like(x1))
    m1 = (w[:, None] * x1_safe).sum(0) / (w.sum() + 1e-20)
    d1, d0 = x1_safe - m1, x0 - x0.mean(0)
    p1_safe = torch.where(ok[:, None], p1, torch.zeros_like(p1))
    g = length * (_whitened_sq_norm(metric, d1) - _whitened_sq_norm(metric, d0))
    g = g * (d1 * p1_safe).sum(-1)
    return torch.where(ok, g, torch.zeros_like(g))


def chees_step(
    target: Density,
    state: State,
    step_size: float | Tensor,
    generator: torch.Generator | None = None,
    *,
    inv_mass: Metric | Tensor | None = None,
    trajectory_length: float | None = None,
    jitter: float | None = None,
    criterion: bool = False,
) -> tuple[State, Info]:
    """One jittered-HMC transition (Hoffman et al. 2021, Algorithm 1, without the adaptation).

    ``trajectory_length`` is ``T`` (``None``: a single leapfrog step); ``jitter`` the ``u`` in
    (0, 1] shared by all chains (``None``: drawn uniformly from ``generator``). With
    ``criterion=True``, ``Info.extra["chees_grad"]`` holds the per-chain ChEES gradient terms
    for the warm-up adapter. ``Info.extra`` always has ``energy`` (the Hamiltonian at the new
    state, for E-BFMI), ``n_leapfrog`` and ``diverged``.
    """
    metric = as_metric(inv_mass, state.x)
    chains = state.x.shape[0]
    dtype, device = state.x.dtype, state.x.device
    h = torch.as_tensor(step_size, dtype=dtype, device=device).expand(chains)
    if jitter is None:
        u = 1.0 - rand((1,), generator, dtype, device)  # uniform on (0, 1]
    else:
        u = torch.as_tensor(jitter, dtype=dtype, device=device).reshape(1)
    n = n_steps(trajectory_length, u, h)
    p0 = metric.momentum(state.x, generator)
    prop, p1 = leapfrog_counts(target, state, p0, h, metric, n)
    new, info = hamiltonian_correct(state, prop, p0, p1, metric, generator, n)
    extra = info.extra  # energy
    extra.update(n_leapfrog=n, diverged=info.diverged)
    if criterion:
        ok = ~info.diverged & torch.isfinite(prop.x).all(-1)
        length = u * (trajectory_length if trajectory_length is not None else h)
        extra["chees_grad"] = chees_gradient(
            metric, state.x, prop.x, p1, info.accept_prob, ok, length
        )
    return new, info


class ChEESAdapter:
    """Warm-up of ``T`` by the ChEES criterion across chains, for the runner's adapter hook.

    ``params()`` gives the next warm-up transition its ``T``, the Halton jitter and asks for
    the gradient terms; ``update`` takes one Adam step on ``log T``; ``final_params()`` gives
    the averaged ``T`` (uniform jitter from then on).
    """

    def __init__(self, warmup: int, chains: int, dim: int):
        self.t = 0
        self.log_t: float | None = None  # set from the first step size: one leapfrog step
        self.log_t_avg = 0.0
        self.v = 0.0  # Adam's second moment (beta1 = 0: no first moment)

    def _length(self) -> float | None:
        return None if self.log_t is None else math.exp(self.log_t_avg)

    def params(self) -> dict:
        return {
            "trajectory_length": self._length(),
            "jitter": halton(self.t + 1),
            "criterion": True,
        }

    def update(self, t: int, old: State, new: State, info: Info, step_size: Tensor) -> None:
        self.t += 1
        if self.log_t is None:
            self.log_t = self.log_t_avg = math.log(float(step_size.median()))
            return
        w = torch.where(info.diverged, torch.zeros_like(info.accept_prob), info.accept_prob)
        w = torch.nan_to_num(w, nan=0.0)
        grads = info.extra["chees_grad"]
        if w.sum() <= 0 or not torch.isfinite(grads).all():
            return
        g = float((w * grads).sum() / w.sum())
        self.v = BETA2 * self.v + (1 - BETA2) * g * g
        v_hat = self.v / (1 - BETA2**self.t)
        step = LEARNING_RATE * g / (math.sqrt(v_hat) + 1e-8)
        self.log_t += max(-MAX_LOG_UPDATE, min(MAX_LOG_UPDATE, step))
        # never shorter than one step, nor longer than MAX_LEAPFROG steps
        lo = math.log(float(step_size.median()))
        self.log_t = min(max(self.log_t, lo), lo + math.log(MAX_LEAPFROG))
        decay = self.t**-DECAY
        self.log_t_avg = (1 - decay) * self.log_t_avg + decay * self.log_t

    def final_params(self) -> dict:
        return {"trajectory_length": self._length(), "jitter": None, "criterion": False}


KERNELS["chees"] = Kernel(
    "chees",
    chees_step,
    TARGET_ACCEPT,
    True,
    True,
    "ChEES-HMC (jittered HMC, trajectory length adapted across chains)",
    hamiltonian=True,
    compilable=False,  # the number of leapfrog steps changes every transition
    per_chain_mass=False,  # one metric across chains (T is adapted across them in its units)
    adapter=ChEESAdapter,
)
