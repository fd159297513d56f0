"""MCMC transition kernels for ``p(x) = exp(log_prob(x)) / Z``, batched over chains.

Every kernel is a pure function ``step(target, state, step_size, generator, **params) ->
(state, info)`` over frozen records; ``state.x`` is ``[chains, dim]``. Composed, not copied:
MALA is a Langevin proposal plus a Metropolis-Hastings correction; HMC is the leapfrog
integrator plus the same correction. Only the score is needed by Langevin moves, never ``Z``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from scorelab._utils import rand, randn, scalars
from scorelab.densities.base import Density, inner_score, value_and_score
from scorelab.mcmc.metric import Metric, as_metric, per_chain

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
    grad_evals: int | Tensor  # score evaluations per chain spent by this transition: an int,
    #                           or a [chains] long tensor where chains spend different amounts
    extra: dict[str, Tensor] = field(default_factory=dict)  # kernel-specific per-chain [chains]
    #                          values (HMC: "energy", the Hamiltonian at the draw, for E-BFMI);
    #                          the runner keeps them as MCMCResult.extra[name] [chains, draws]


def init(target: Density, x: Tensor, with_score: bool = True) -> State:
    """The state at positions ``x`` ``[chains, dim]``."""
    x = x.detach()
    if with_score:
        lp, s = value_and_score(target, x)
        return State(x, lp, s)
    return State(x, target._log_prob(x), None)


def mh_accept(log_ratio: Tensor, generator: torch.Generator | None) -> Tensor:
    """Metropolis-Hastings: accept with probability ``min(1, exp(log_ratio))``; NaN rejects."""
    prob = torch.nan_to_num(log_ratio, nan=-math.inf).clamp(max=0).exp()
    return _accept(prob, generator)


def _accept(prob: Tensor, generator: torch.Generator | None) -> Tensor:
    """True with probability ``prob`` (in [0, 1]): ``u < prob`` for ``u ~ U[0, 1)``."""
    return rand(prob.shape, generator, prob.dtype, prob.device) < prob


def select(accepted: Tensor, new: Tensor | None, old: Tensor | None) -> Tensor | None:
    """Per chain: ``new`` where ``accepted`` (``[chains]``, or already shaped to broadcast),
    else ``old`` (``None`` stays ``None``)."""
    if new is None:
        return None
    mask = (
        accepted
        if new.ndim == accepted.ndim
        else accepted.reshape(accepted.shape + (1,) * (new.ndim - accepted.ndim))
    )
    return torch.where(mask, new, old)


def mh_correct(
    state: State, proposal: State, log_ratio: Tensor, generator: torch.Generator | None, evals: int
) -> tuple[State, Info]:
    """Accept ``proposal`` per chain with the MH rule; keep ``state`` elsewhere.

    A proposal whose log-density is NaN or inf is rejected and flagged as a divergence; a NaN
    ratio rejects (both become a log-ratio of -inf in ``Info``).
    """
    (inf_t,) = scalars(log_ratio, math.inf)
    diverged = ~(proposal.log_prob.abs() < inf_t)  # NaN or +-inf
    inf = math.inf
    log_ratio = torch.nan_to_num(log_ratio, -inf, inf, -inf).masked_fill(diverged, -inf)
    new, accepted, prob = _mh_select(state, proposal, log_ratio, generator)
    return new, Info(accepted, prob, log_ratio, diverged, evals)


def _mh_select(
    state: State, proposal: State, log_ratio: Tensor, generator: torch.Generator | None
) -> tuple[State, Tensor, Tensor]:
    """The MH rule for a log-ratio without NaN: the new state, ``accepted`` and
    ``min(1, exp(log_ratio))``."""
    prob = log_ratio.clamp(max=0).exp()
    accepted = _accept(prob, generator)
    rows = accepted[:, None]  # one mask for the [chains, dim] selections
    new = State(
        select(rows, proposal.x, state.x),
        select(accepted, proposal.log_prob, state.log_prob),
        select(rows, proposal.score, state.score),
    )
    return new, accepted, prob


def hamiltonian_correct(
    state: State,
    proposal: State,
    p0: Tensor,
    p1: Tensor,
    metric: Metric,
    generator: torch.Generator | None,
    evals: int | Tensor,
) -> tuple[State, Info]:
    """MH for a Hamiltonian trajectory from ``(state, p0)`` to ``(proposal, p1)``: accept with
    ``min(1, exp(H_0 - H_1))``, ``H = K(p) - log p(x)`` (Neal 2011, sec. 3.2).

    A log-ratio that is NaN or +-inf (a non-finite log-density or momentum) or below
    ``-MAX_ENERGY_ERROR`` is a divergence (as in Stan) and rejects; NaN and +inf become -inf,
    which also covers a proposal whose log-density is NaN or inf (its ``H`` is then NaN or
    inf). ``Info.extra["energy"]`` is ``H`` at the draw (Stan's ``energy__``, for E-BFMI): the
    proposal's if taken, else the start's."""
    h_start = metric.kinetic(p0) - state.log_prob
    h_end = metric.kinetic(p1) - proposal.log_prob
    inf = math.inf
    log_ratio = torch.nan_to_num(h_start - h_end, nan=-inf, posinf=-inf, neginf=-inf)
    (lowest,) = scalars(log_ratio, -MAX_ENERGY_ERROR)
    diverged = log_ratio < lowest  # no NaN left
    new, accepted, prob = _mh_select(state, proposal, log_ratio, generator)
    energy = torch.where(accepted, h_end, h_start)
    return new, Info(accepted, prob, log_ratio, diverged, evals, {"energy": energy})


def langevin_proposal(
    target: Density, state: State, h: float | Tensor, generator: torch.Generator | None
) -> tuple[State, Tensor]:
    """``x' = x + h s + sqrt(2h) xi`` (``s`` the score at ``x``, ``h`` a float or one per chain)
    and the MH log-ratio that makes it exact, ``log p(x') - log p(x) + log q(x | x') -
    log q(x' | x)`` with ``q(b | a) = N(b; a + h s(a), 2h I)``.

    The forward residual is ``k = sqrt(2h) xi`` and the backward one ``x - x' - h s' =
    -(h g + k)`` with ``g = s + s'``, so ``log q(x | x') - log q(x' | x) = (|k|^2 - |h g +
    k|^2) / 4h = -g . (h g + 2 k) / 4``: no division by ``h`` (exact as ``h -> 0``) and a third
    of the operations of evaluating both Gaussian densities."""
    h = per_chain(h, state.x)
    noise = randn(state.x.shape, generator, state.x.dtype, state.x.device)
    kick = (h + h).sqrt() * noise if isinstance(h, Tensor) else (2 * h) ** 0.5 * noise
    x_new = state.x + h * state.score + kick
    prop = init(target, x_new)
    g = state.score + prop.score
    log_q = (g * torch.add(h * g, kick, alpha=2)).sum(-1)
    (quarter,) = scalars(log_q, 0.25)
    return prop, prop.log_prob - state.log_prob - log_q * quarter


def ula_step(target: Density, state: State, step_size: float | Tensor, generator=None):
    """Unadjusted Langevin: ``x' = x + h grad log p(x) + sqrt(2h) xi`` (always taken; biased)."""
    prop, log_ratio = langevin_proposal(target, state, step_size, generator)
    prob = torch.nan_to_num(log_ratio, nan=-math.inf).clamp(max=0).exp()
    finite = torch.isfinite(prop.x).all(-1) & torch.isfinite(prop.score).all(-1)
    diverged = ~(finite & torch.isfinite(prop.log_prob))
    accepted = torch.ones_like(diverged)
    return prop, Info(accepted, prob, log_ratio, diverged, 1)


def mala_step(target: Density, state: State, step_size: float | Tensor, generator=None):
    """Metropolis-adjusted Langevin (Roberts & Tweedie 1996): Langevin proposal + MH."""
    prop, log_ratio = langevin_proposal(target, state, step_size, generator)
    return mh_correct(state, prop, log_ratio, generator, 1)


def rwm_step(target: Density, state: State, step_size: float | Tensor, generator=None):
    """Random-walk Metropolis: ``x' = x + step_size xi``, accept with ``min(1, p(x')/p(x))``."""
    noise = randn(state.x.shape, generator, state.x.dtype, state.x.device)
    prop = init(target, state.x + per_chain(step_size, state.x) * noise, with_score=False)
    return mh_correct(state, prop, prop.log_prob - state.log_prob, generator, 0)


def random_walk_step(target: Density, state: State, step_size: float | Tensor, generator=None):
    """Brownian motion ``x' = x + sqrt(2h) xi``: Langevin without the score; never settles on p."""
    noise = randn(state.x.shape, generator, state.x.dtype, state.x.device)
    x_new = state.x + (2 * per_chain(step_size, state.x)) ** 0.5 * noise
    lp = target._log_prob(x_new)
    ones = torch.ones_like(lp, dtype=torch.bool)
    info = Info(ones, torch.ones_like(lp), torch.zeros_like(lp), ~torch.isfinite(x_new).all(-1), 0)
    return State(x_new, lp, None), info


def leapfrog(
    target: Density,
    state: State,
    p: Tensor,
    h: float | Tensor,
    inv_mass: Metric | Tensor | None,
    n_steps: int,
) -> tuple[State, Tensor]:
    """Störmer-Verlet for ``H = -log p(x) + p^T M^{-1} p / 2`` (``Metric``: diagonal or dense
    ``M^{-1}``; ``h`` a float or one per chain); reversible and volume preserving. Returns the
    end state and momentum; one score evaluation a step, ``log p`` only at the end (the steps
    before it take the score alone, ``inner_score``)."""
    metric = as_metric(inv_mass, state.x)
    h = per_chain(h, state.x)
    x, score = state.x, state.score
    lp = state.log_prob
    half = h * scalars(x, 0.5)[0] if isinstance(h, Tensor) else 0.5 * h
    # x += h M^{-1} p; diagonal: h M^{-1} formed once per trajectory (one product a step).
    # Not torch.addcmul: eagerly it may round differently (fused multiply-add) from the
    # compiled block's mul + add, and compiled blocks must give the eager chains bit for bit
    h_inv_mass = None if metric.dense else h * metric.inv_mass
    # p and x are fresh tensors after their first update, so later updates go in place (the
    # same bits, a little cheaper eagerly); the caller's p and state.x are never written
    p = p + half * score  # half step in momentum
    for i in range(n_steps):
        dx = h * metric.velocity(p) if h_inv_mass is None else h_inv_mass * p
        x = x + dx if i == 0 else x.add_(dx)
        if i < n_steps - 1:
            p.add_(h * inner_score(target, x))  # full step
        else:
            lp, score = value_and_score(target, x)
            p.add_(half * score)  # half step at the end
    return State(x, lp, score), p


def hmc_step(
    target: Density,
    state: State,
    step_size: float | Tensor,
    generator=None,
    *,
    inv_mass: Metric | Tensor | None = None,
    n_leapfrog: int = 10,
):
    """Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011): leapfrog trajectory + MH."""
    metric = as_metric(inv_mass, state.x)
    p0 = metric.momentum(state.x, generator)
    prop, p1 = leapfrog(target, state, p0, step_size, metric, n_leapfrog)
    return hamiltonian_correct(state, prop, p0, p1, metric, generator, n_leapfrog)


def sgld_step(target: Density, state: State, step_size: float | Tensor, generator=None):
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
    h = per_chain(step_size, state.x)
    noise = randn(state.x.shape, generator, state.x.dtype, state.x.device)
    x_new = state.x + h * minibatch_score(state.x, generator) + (2 * h) ** 0.5 * noise
    finite = torch.isfinite(x_new).all(-1)
    ones = torch.ones_like(finite)
    nan = torch.full(finite.shape, math.nan, dtype=x_new.dtype, device=x_new.device)
    # the full-data log-density is not evaluated (that is the point of SGLD)
    return State(x_new, nan, None), Info(ones, torch.ones_like(nan), nan, ~finite, 1)


def while_loop_tree(cond: Callable, body: Callable, carry):
    """``torch``'s ``while_loop`` (compiled, inside ``torch.compile``) over a pytree ``carry``
    (tuples, named tuples, dicts of tensors): ``while cond(carry): carry = body(carry)``.
    Copies what the loop may not alias (its outputs may alias neither its inputs nor each
    other). (Packing the carry into one tensor per dtype was slower: NUTS, 100-D, 64 chains,
    0.35 -> 1.1 ms a leaf; the concatenation copies every carried value each iteration.)"""
    from torch._higher_order_ops.while_loop import while_loop
    from torch.utils._pytree import tree_flatten, tree_unflatten

    flat, spec = tree_flatten(carry)

    def flat_body(*flat):
        out = tree_flatten(body(tree_unflatten(list(flat), spec)))[0]
        seen = list(flat)
        for i, o in enumerate(out):
            if any(o is s for s in seen):
                out[i] = o.clone()
            seen.append(out[i])
        return tuple(out)

    def flat_cond(*flat):
        return cond(tree_unflatten(list(flat), spec))

    out = while_loop(flat_cond, flat_body, tuple(v.clone() for v in flat))
    return tree_unflatten(list(out), spec)


@dataclass(frozen=True)
class Stepwise:
    """A kernel whose transitions take different numbers of leapfrog steps per chain (NUTS),
    cut into steps, so that in a block each chain runs its transitions back to back instead of
    every transition waiting for the slowest chain (``blocks.block_stepwise``). Each
    function takes the kernel's ``params`` as keywords; ``draws`` are the kernel's pre-drawn
    numbers for the whole block (``[block, *shape]`` each, as its ``step`` draws them per
    transition), which the kernel reads per chain.

    ``start(target, state, step_size, draws, c, previous) -> walk``: chain ``j`` begins its
    transition ``c[j]`` (``[chains]`` long) from ``state`` with step sizes ``[chains]``
    (``previous``: the walk it replaces where a chain starts, ``None`` at the block's start;
    a leaf of the result that *is* ``previous``'s tensor is kept as is); ``advance(target,
    walk, draws) -> walk``: one leapfrog step of every chain not ``done(walk)`` (``[chains]``
    bool); ``finish(target, walk) -> (state, info)``: what ``step`` returns, read where done.
    Started, advanced until done and finished, chain ``j`` must get what ``step`` gives it with
    the same numbers: the runner tests rely on it (tests/mcmc/test_nuts_async.py).
    """

    start: Callable[..., object]
    advance: Callable[..., object]
    done: Callable[[object], Tensor]
    finish: Callable[..., tuple[State, Info]]


class Adapter(Protocol):
    """Kernel-specific warm-up adaptation (e.g. ChEES's trajectory length), made by
    ``Kernel.adapter(warmup, chains, dim)``."""

    def params(self) -> dict:
        """Extra keyword arguments for the kernel step in the next warm-up transition."""

    def update(self, t: int, old: State, new: State, info: Info, step_size: Tensor) -> None:
        """Called after warm-up transition ``t`` with the states before and after it and the
        step sizes used (``[chains]``)."""

    def final_params(self) -> dict:
        """Extra keyword arguments for the kernel step after warm-up."""


@dataclass(frozen=True)
class Kernel:
    """A kernel as the runner sees it.

    The runner calls ``step(target, state, step_size, generator, **params)``; ``step_size`` is a
    float or a ``[chains]`` tensor. ``params`` holds ``inv_mass`` (a ``Metric``) when
    ``hamiltonian``, ``n_leapfrog`` when ``uses_n_leapfrog``, and whatever the ``adapter``'s
    ``params()`` (warm-up) or ``final_params()`` (after) return. An adapter is any object with
    those two methods and ``update(t, old_state, new_state, info, step_size)``, called after each
    warm-up transition; a kernel with an adapter warms up one transition at a time (eagerly) and
    samples in compiled blocks afterwards if ``compilable``. ``compilable`` kernels draw the same
    random shapes in every transition (the runner pre-draws them per block and may run the
    block as one compiled call); others (ChEES) always run eagerly with the generator itself.
    """

    name: str
    step: Callable[..., tuple[State, Info]]
    target_accept: float | None  # what warm-up tunes the step size to; None: step_size required
    uses_score: bool
    adjusted: bool  # exact for p (Metropolis-Hastings corrected)
    description: str
    hamiltonian: bool = False  # takes inv_mass= (a Metric); gets mass adaptation in warm-up
    per_chain_mass: bool = True  # (Hamiltonian) takes a per-chain metric ([chains, dim])
    uses_n_leapfrog: bool = False  # takes n_leapfrog=
    compilable: bool = True  # fixed random shapes per transition: may run in compiled blocks
    adapter: Callable[[int, int, int], Adapter] | None = None  # (warmup, chains, dim) -> Adapter
    # how to run blocks chain by chain (each chain's transitions back to back) instead of in
    # lock step, used when sample(stepwise=True)
    stepwise: Stepwise | None = None
    # default sample(step_jitter=): step x U(1 - j, 1 + j) after warm-up. 0 for every kernel:
    # measured on HMC (banana, 10-D funnel), j = 0.3-0.5 multiplied divergences by 10-17 and
    # lowered the min ESS (docs/design.md, "Jittered step sizes")
    step_jitter: float = 0.0


KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in [
        Kernel("rwm", rwm_step, 0.234, False, True, "random-walk Metropolis"),
        Kernel("random_walk", random_walk_step, None, False, False, "Brownian motion (no score)"),
        Kernel("ula", ula_step, 0.574, True, False, "unadjusted Langevin"),
        Kernel("mala", mala_step, 0.574, True, True, "Metropolis-adjusted Langevin"),
        Kernel(
            "hmc",
            hmc_step,
            0.8,
            True,
            True,
            "Hamiltonian Monte Carlo",
            hamiltonian=True,
            uses_n_leapfrog=True,
        ),
        Kernel(
            "sgld", sgld_step, None, True, False, "stochastic-gradient Langevin", compilable=False
        ),
    ]
}


def get_kernel(name: str) -> Kernel:
    """The kernel called ``name``; a ``ValueError`` lists the valid names otherwise."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; choose one of {', '.join(KERNELS)}")
    return KERNELS[name]
