"""What a transition of the runner does around its kernel step, and blocks of transitions for
kernels whose chains need not wait for each other.

``jittered`` and ``after_step`` are the runner's ``_transition`` without the kernel step (one
definition: the runner calls them too). ``block_stepwise`` runs a block of a
``Kernel.stepwise`` kernel (NUTS) chain by chain: what the runner's lock-step block computes,
with each chain running its transitions back to back instead of every transition waiting for
the slowest chain's tree (NUTS's per-chain transitions differ in length; NumPyro's vectorized
chains and BlackJAX under ``vmap`` wait).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from scorelab.densities.base import Density
from scorelab.mcmc.adaptation import DAState, da_step_size, da_update
from scorelab.mcmc.kernels import Info, Kernel, State, select, while_loop_tree

# Outputs staged per chain before they are written into the block's [block, chains, ...]
# outputs: a loop's carried values are copied every iteration (while_loop's outputs may not
# alias its inputs), so the leaf loop carries a small [STAGED, chains, ...] stage and an outer
# loop writes it out when a chain has filled it (measured: 100-D, 64 chains, carrying the whole
# x output [50, 64, 100] cost 0.15 ms a leaf against 0.03 ms for a [50, 64, 1] one).
STAGED = 8


def jittered(h: Tensor, adapting: Tensor | bool, jitter: float, u: Tensor) -> Tensor:
    """``h`` times ``1 + jitter (2u - 1)`` where not ``adapting`` (a bool tensor, scalar or per
    chain, or a Python bool): Neal 2011, sec. 5.4.2.3 (Stan's ``stepsize_jitter``)."""
    if isinstance(adapting, bool):
        return h if adapting else h * (1.0 + jitter * (2.0 * u - 1.0))
    return h * torch.where(adapting, 1.0, 1.0 + jitter * (2.0 * u - 1.0))


def after_step(
    k: Kernel, state: State, new: State, info: Info, da: DAState, adapting, h: Tensor
) -> tuple[State, DAState, tuple]:
    """What follows a kernel step: unadjusted divergences set back, the dual-averaging update
    (Hoffman & Gelman 2014, Alg. 5) where ``adapting`` (a scalar or per chain), and the
    per-chain outputs ``(x, accepted, accept_prob, diverged, step size, grad evals, extra)``.
    Returns (new state, adaptation state, outputs). ``adapting`` may be a Python bool (the
    eager runner's): the same numbers with the selections skipped."""
    if not k.adjusted:
        bad = info.diverged
        new = State(
            select(bad, state.x, new.x),
            select(bad, state.log_prob, new.log_prob),
            None if new.score is None else select(bad, state.score, new.score),
        )
    if k.target_accept is not None and adapting is not False:
        accept = torch.nan_to_num(info.accept_prob, nan=0.0)
        da = da_update(da, accept, k.target_accept, adapting)
    chains = state.x.shape[0]
    if isinstance(info.grad_evals, int):
        evals = torch.full((chains,), info.grad_evals, dtype=torch.long, device=state.x.device)
    else:
        evals = info.grad_evals.long().expand(chains)
    ys = (new.x, info.accepted, info.accept_prob, info.diverged, h, evals, dict(info.extra))
    if torch.compiler.is_compiling():  # outputs must not alias the carried state inside scan
        ys = tree_map(torch.clone, ys)
    return new, da, ys


def block_stepwise(
    k: Kernel, target: Density, params: dict, jitter: float, carry, xs, ys_spec=None
):
    """A block of a ``Kernel.stepwise`` kernel chain by chain; the runner's block signature
    (``ys_spec`` unused) and results ``(carry, outputs [block, chains, ...])``.

    One loop iteration is one leapfrog step of every chain; a chain whose transition ``c``
    ends there takes its outcome, its own dual-averaging update (``flags[c]``), its outputs
    for row ``c``, and starts transition ``c + 1`` with its step size and its numbers from the
    block's draws (the jitter uniforms, then the kernel's own, in ``_transition``'s order). So
    each chain gets the numbers, step sizes and trees of the lock-step block, in ``max_j
    sum_i n_ij`` iterations instead of ``sum_i max_j n_ij`` (``n_ij``: chain ``j``'s leapfrog
    steps in transition ``i``). Outputs go to a stage of ``STAGED`` rows per chain, written
    out when a chain fills it. Eagerly Python loops (the bookkeeping skipped in iterations
    where no chain finishes); traced by ``torch.compile``, two nested ``while_loop``s.
    """
    sw = k.stepwise
    draws, flags = xs
    x, lp, score, da = carry
    n, chains = flags.shape[0], x.shape[0]
    rows = torch.arange(chains, device=x.device)
    u_jit, own = (draws[0], list(draws[1:])) if jitter else (None, list(draws))
    has_score = score.ndim > 1  # static: the placeholder of scoreless kernels is [0]
    compiling = torch.compiler.is_compiling()

    def where(mask, a, b):  # per chain, over pytrees of [chains, ...] tensors
        def pick(u, v):
            return u if u is v else torch.where(mask.view(-1, *[1] * (u.ndim - 1)), u, v)

        return tree_map(pick, a, b)

    def as_state(xs):
        return State(xs[0], xs[1], xs[2] if has_score else None)

    def begin(c, xs, da, walk):  # transition c of every chain: its step size, a fresh start
        c = c.clamp(max=n - 1)  # a chain done with the block starts nothing that is kept
        flag = flags[c]
        h = da_step_size(da, flag)
        if jitter:
            h = jittered(h, flag, jitter, u_jit[c, rows])
        return h, sw.start(target, as_state(xs), h, own, c, walk, **params)

    def leaf(loop):  # one leapfrog step of every chain; finished transitions staged
        c, xs, da, h, walk, stage, slot = loop
        walk = sw.advance(target, walk, own, **params)
        done = sw.done(walk) & (c < n)
        if not compiling and not done.any():
            return c, xs, da, h, walk, stage, slot
        new, info = sw.finish(target, walk, **params)
        adapting = flags[c.clamp(max=n - 1)] & done
        new, da, out = after_step(k, as_state(xs), new, info, da, adapting, h)
        xs = where(done, (new.x, new.log_prob, new.score if has_score else xs[2]), xs)
        at = (slot, rows)  # slot < STAGED: the leaf loop stops when a chain's stage is full
        stage = tree_map(lambda s, y: s.index_put(at, where(done, y, s[at])), stage, out)
        c, slot = c + done.long(), slot + done.long()
        again = done & (c < n)
        h_next, fresh = begin(c, xs, da, walk)
        return c, xs, da, torch.where(again, h_next, h), where(again, fresh, walk), stage, slot

    def leaves(outer):  # leaves until a chain's stage is full, then write the stages out
        loop, ys = outer
        c, xs, da, h, walk, stage, slot = loop
        if compiling:
            inner = (c, xs, da, h, walk, stage, torch.zeros_like(slot))
            inner = while_loop_tree(
                lambda lp: (lp[6] < STAGED).all() & (lp[0] < n).any(), leaf, inner
            )
        else:
            inner = (c, xs, da, h, walk, stage, torch.zeros_like(slot))
            while (inner[6] < STAGED).all() and (inner[0] < n).any():
                inner = leaf(inner)
        c, slot = inner[0], inner[6]
        # stage row s of chain j is its transition c_j - slot_j + s; unfilled rows go to the
        # spare last row of the outputs (dropped at the end), so no row is written twice
        s = torch.arange(STAGED, device=c.device)[:, None]
        row = torch.where(s < slot, c - slot + s, n)
        to = (row, rows.expand(STAGED, chains))
        ys = tree_map(lambda y, st: y.index_put(to, st), ys, inner[5])
        return inner, ys

    c = torch.zeros(chains, dtype=torch.long, device=x.device)
    xs, da = (x, lp, score), DAState(*da)
    h, walk = begin(c, xs, da, None)
    new, info = sw.finish(target, walk, **params)  # only for the outputs' shapes
    shapes = after_step(k, as_state(xs), new, info, da, flags[0], h)[2]
    ys = tree_map(lambda y: y.new_zeros((n + 1, *y.shape)), shapes)
    stage = tree_map(lambda y: y.new_zeros((STAGED, *y.shape)), shapes)
    outer = ((c, xs, da, h, walk, stage, torch.zeros_like(c)), ys)
    if compiling:
        outer = while_loop_tree(lambda o: (o[0][0] < n).any(), leaves, outer)
    else:
        while (outer[0][0] < n).any():
            outer = leaves(outer)
    (_, xs, da, _, _, _, _), ys = outer
    return (*xs, tuple(da)), tree_map(lambda y: y[:n], ys)
