"""MCMC transition kernels for ``p(x) = exp(log_prob(x)) / Z``, batched over chains.

Every kernel is a pure function ``step(target, state, step_size, generator, **params) ->
(state, info)`` over frozen records; ``state.x`` is ``[chains, dim]``. Composed, not copied:
MALA is a Langevin proposal plus a Metropolis-Hastings correction; HMC is the leapfrog
integrator plus the same correction. Only the score is needed by Langevin moves, never ``Z``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scorelab._utils import rand, randn
from scorelab.densities.base import Density, value_and_score

# An HMC transition whose energy error exceeds this is a divergence (as in Stan).
MAX_ENERGY_ERROR = 1000.0


@dataclass(frozen=True)
class State:
    """Where the chains are: positions ``x`` ``[chains, dim]``, ``log_prob`` ``[chains]`` and
    ``score`` ``[chains, dim]`` at ``x`` (``None`` for kernels that never use gradients)."""

    x: Tensor
    log_prob: Tensor
    score: Tensor | None


@dataclass(frozen=True)
class Info:
    """What one transition did, per chain."""

    accepted: Tensor  # [chains] bool: the proposal was taken
    accept_prob: Tensor  # [chains] min(1, exp(log_accept_ratio)); for unadjusted moves the MALA
    #                      acceptance of the same move (used to tune ULA's step size)
    log_accept_ratio: Tensor  # [chains]
    diverged: Tensor  # [chains] bool: non-finite state or (HMC) energy error > MAX_ENERGY_ERROR
    grad_evals: int  # score evaluations per chain spent by this transition


def init(target: Density, x: Tensor, with_score: bool = True) -> State:
    """The state at positions ``x`` ``[chains, dim]``."""
    x = x.detach()
    if with_score:
        lp, s = value_and_score(target, x)
        return State(x, lp, s)
    return State(x, target._log_prob(x), None)


def mh_accept(log_ratio: Tensor, generator: torch.Generator | None) -> Tensor:
    """Metropolis-Hastings: accept with probability ``min(1, exp(log_ratio))``; NaN rejects."""
    u = rand(log_ratio.shape, generator, log_ratio.dtype, log_ratio.device)
    return torch.log(u) < torch.nan_to_num(log_ratio, nan=-math.inf)


def select(accepted: Tensor, new: Tensor | None, old: Tensor | None) -> Tensor | None:
    """Per chain: ``new`` where ``accepted``, else ``old`` (``None`` stays ``None``)."""
    if new is None:
        return None
    mask = accepted.reshape(accepted.shape + (1,) * (new.ndim - 1))
    return torch.where(mask, new, old)


def mh_correct(
    state: State, proposal: State, log_ratio: Tensor, generator: torch.Generator | None, evals: int
) -> tuple[State, Info]:
    """Accept ``proposal`` per chain with the MH rule; keep ``state`` elsewhere.

    A proposal whose log-density is NaN or inf is rejected and flagged as a divergence.
    """
    diverged = ~torch.isfinite(proposal.log_prob)
    log_ratio = torch.where(diverged, -math.inf, log_ratio)
    accepted = mh_accept(log_ratio, generator)
    new = State(
        select(accepted, proposal.x, state.x),
        select(accepted, proposal.log_prob, state.log_prob),
        select(accepted, proposal.score, state.score),
    )
    prob = torch.nan_to_num(log_ratio, nan=-math.inf).clamp(max=0).exp()
    return new, Info(accepted, prob, log_ratio, diverged, evals)


def _langevin_log_q(to: Tensor, frm: Tensor, score: Tensor, h: float) -> Tensor:
    """``log q(to | frm)`` of the Langevin proposal ``N(frm + h s(frm), 2h I)`` up to a constant."""
    return -((to - frm - h * score) ** 2).sum(-1) / (4 * h)


def langevin_proposal(
    target: Density, state: State, h: float, generator: torch.Generator | None
) -> tuple[State, Tensor]:
    """``x' = x + h score(x) + sqrt(2h) xi`` and the MH log-ratio that would make it exact."""
    noise = randn(state.x.shape, generator, state.x.dtype, state.x.device)
    x_new = state.x + h * state.score + math.sqrt(2 * h) * noise
    prop = init(target, x_new)
    log_ratio = (
        prop.log_prob
        - state.log_prob
        + _langevin_log_q(state.x, x_new, prop.score, h)
        - _langevin_log_q(x_new, state.x, state.score, h)
    )
    return prop, log_ratio


def ula_step(target: Density, state: State, step_size: float, generator=None):
    """Unadjusted Langevin: ``x' = x + h grad log p(x) + sqrt(2h) xi`` (always taken; biased)."""
    prop, log_ratio = langevin_proposal(target, state, step_size, generator)
    prob = torch.nan_to_num(log_ratio, nan=-math.inf).clamp(max=0).exp()
    finite = torch.isfinite(prop.x).all(-1) & torch.isfinite(prop.score).all(-1)
    diverged = ~(finite & torch.isfinite(prop.log_prob))
    accepted = torch.ones_like(diverged)
    return prop, Info(accepted, prob, log_ratio, diverged, 1)


def mala_step(target: Density, state: State, step_size: float, generator=None):
    """Metropolis-adjusted Langevin (Roberts & Tweedie 1996): Langevin proposal + MH."""
    prop, log_ratio = langevin_proposal(target, state, step_size, generator)
    return mh_correct(state, prop, log_ratio, generator, 1)


def rwm_step(target: Density, state: State, step_size: float, generator=None):
    """Random-walk Metropolis: ``x' = x + step_size xi``, accept with ``min(1, p(x')/p(x))``."""
    noise = randn(state.x.shape, generator, state.x.dtype, state.x.device)
    prop = init(target, state.x + step_size * noise, with_score=False)
    return mh_correct(state, prop, prop.log_prob - state.log_prob, generator, 0)


def random_walk_step(target: Density, state: State, step_size: float, generator=None):
    """Brownian motion ``x' = x + sqrt(2h) xi``: Langevin without the score; never settles on p."""
    noise = randn(state.x.shape, generator, state.x.dtype, state.x.device)
    x_new = state.x + math.sqrt(2 * step_size) * noise
    lp = target._log_prob(x_new)
    ones = torch.ones_like(lp, dtype=torch.bool)
    info = Info(ones, torch.ones_like(lp), torch.zeros_like(lp), ~torch.isfinite(x_new).all(-1), 0)
    return State(x_new, lp, None), info


def leapfrog(
    target: Density, state: State, p: Tensor, h: float, inv_mass: Tensor, n_steps: int
) -> tuple[State, Tensor]:
    """Störmer-Verlet for ``H = -log p(x) + p^T M^{-1} p / 2`` (diagonal ``M^{-1}``); reversible
    and volume preserving. Returns the end state and momentum; one score evaluation a step."""
    x, score = state.x, state.score
    lp = state.log_prob
    p = p + 0.5 * h * score  # half step in momentum
    for i in range(n_steps):
        x = x + h * inv_mass * p  # full step in position
        lp, score = value_and_score(target, x)
        p = p + (h if i < n_steps - 1 else 0.5 * h) * score  # full step, half at the end
    return State(x, lp, score), p


def hmc_step(
    target: Density,
    state: State,
    step_size: float,
    generator=None,
    *,
    inv_mass: Tensor | None = None,
    n_leapfrog: int = 10,
):
    """Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011): leapfrog trajectory + MH."""
    inv_mass = torch.ones_like(state.x[0]) if inv_mass is None else inv_mass
    p0 = randn(state.x.shape, generator, state.x.dtype, state.x.device) / inv_mass.sqrt()
    prop, p1 = leapfrog(target, state, p0, step_size, inv_mass, n_leapfrog)
    kinetic = lambda p: 0.5 * (p * p * inv_mass).sum(-1)  # noqa: E731
    log_ratio = (prop.log_prob - kinetic(p1)) - (state.log_prob - kinetic(p0))
    new, info = mh_correct(state, prop, log_ratio, generator, n_leapfrog)
    diverged = ~torch.isfinite(log_ratio) | (log_ratio < -MAX_ENERGY_ERROR)
    return new, Info(info.accepted, info.accept_prob, log_ratio, diverged, n_leapfrog)


def sgld_step(target: Density, state: State, step_size: float, generator=None):
    """Stochastic-gradient Langevin (Welling & Teh 2011): ULA with a minibatch score estimate.

    ``x' = x + h g(x) + sqrt(2h) xi`` where ``g`` is ``target.minibatch_score`` (an unbiased
    estimate of the score; see ``scorelab.mcmc.Posterior``). With a decreasing ``h`` the
    minibatch noise vanishes against the injected noise: "SGD plus noise is almost Langevin".
    """
    minibatch_score = getattr(target, "minibatch_score", None)
    if minibatch_score is None:
        raise ValueError(
            "kernel 'sgld' needs a target with minibatch_score(x, generator), such as "
            "scorelab.mcmc.Posterior(log_prior, log_likelihood, data, batch_size); for a plain "
            "density use 'ula' or 'mala'"
        )
    noise = randn(state.x.shape, generator, state.x.dtype, state.x.device)
    x_new = (
        state.x + step_size * minibatch_score(state.x, generator) + math.sqrt(2 * step_size) * noise
    )
    finite = torch.isfinite(x_new).all(-1)
    ones = torch.ones_like(finite)
    nan = torch.full(finite.shape, math.nan, dtype=x_new.dtype, device=x_new.device)
    # the full-data log-density is not evaluated (that is the point of SGLD)
    return State(x_new, nan, None), Info(ones, torch.ones_like(nan), nan, ~finite, 1)


@dataclass(frozen=True)
class Kernel:
    """A kernel as the runner sees it."""

    name: str
    step: Callable[..., tuple[State, Info]]
    target_accept: float | None  # what warm-up tunes the step size to; None: step_size required
    uses_score: bool
    adjusted: bool  # exact for p (Metropolis-Hastings corrected)
    description: str


KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in [
        Kernel("rwm", rwm_step, 0.234, False, True, "random-walk Metropolis"),
        Kernel("random_walk", random_walk_step, None, False, False, "Brownian motion (no score)"),
        Kernel("ula", ula_step, 0.574, True, False, "unadjusted Langevin"),
        Kernel("mala", mala_step, 0.574, True, True, "Metropolis-adjusted Langevin"),
        Kernel("hmc", hmc_step, 0.8, True, True, "Hamiltonian Monte Carlo"),
        Kernel("sgld", sgld_step, None, True, False, "stochastic-gradient Langevin"),
    ]
}


def get_kernel(name: str) -> Kernel:
    """The kernel called ``name``; a ``ValueError`` lists the valid names otherwise."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; choose one of {', '.join(KERNELS)}")
    return KERNELS[name]
