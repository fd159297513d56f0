"""The No-U-Turn sampler, multinomial and iterative, batched over chains.

Hoffman & Gelman (2014), "The No-U-Turn Sampler", JMLR 15, with the multinomial variant and the
generalized U-turn criterion of Betancourt (2017), "A Conceptual Introduction to Hamiltonian
Monte Carlo", arXiv:1701.02434, Appendix A, as implemented in Stan (>= 2.26, with the criterion
also checked across the two halves of every merge) and BlackJAX.

Decomposed as BlackJAX and NumPyro do, each piece a small function tested alone:

- how a trajectory grows: ``nuts_step`` doubles it, each doubling a new subtree of ``2^depth``
  leapfrog steps in a random direction, built leaf by leaf (iteratively, not recursively);
- how the proposal is chosen: ``uniform_progressive`` (multinomial within a subtree: each leaf
  with probability proportional to ``exp(-H)``) and ``biased_progressive`` (between subtrees:
  the new subtree's pick replaces the current one with probability ``min(1, W_new / W_old)``);
- when it stops: ``uturn`` (the criterion), ``merge_turning`` (Stan's three checks when two
  adjacent subtrees join) and ``checkpoint_levels`` (which subtrees end at a leaf, so that only
  ``O(depth)`` momenta are stored, as NumPyro's iterative ``build_tree``).

Batching: all chains take their leapfrog steps in lock step (every live chain is at the same
depth and leaf) in fixed shapes: a chain whose tree has finished is masked (``torch.where``),
not dropped, as NumPyro's vectorized chains and BlackJAX under ``vmap``; its lanes are still
computed, but ``Info.grad_evals`` counts each chain's real leaves. Fixed shapes and a table of
uniforms drawn up front make a transition compilable: one loop body (``_grow`` then
``_merge``) runs in a Python loop eagerly (``_build_eager``) and in a ``while_loop`` under
``torch.compile`` (``_build_compiled``), so the runner compiles blocks of NUTS transitions as
for HMC, with the same draws (tested in tests/mcmc/test_nuts_compiled.py).

Chains that do not wait: ``nuts_stepwise`` cuts a transition into ``_start_tree``, one
``_iteration`` per leaf (per-chain depths and leaves, each chain reading its own transition's
numbers) and ``_finish``, so that the runner can run a block chain by chain (``Kernel.stepwise``,
``scorelab.mcmc.blocks``): a block then costs ``max_j sum_i n_ij`` leaf iterations instead of
``sum_i max_j n_ij``, with the same chains (tests/mcmc/test_nuts_async.py). Opt in with
``mcmc.sample(..., kernel="nuts", stepwise=True)``; not the default (see the registration
below).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from scorelab._utils import PreDrawn, rand
from scorelab.densities.base import Density
from scorelab.mcmc.kernels import (
    KERNELS,
    MAX_ENERGY_ERROR,
    Info,
    Kernel,
    State,
    Stepwise,
    leapfrog,
    select,
    while_loop_tree,
)
from scorelab.mcmc.metric import Metric, as_metric

DEFAULT_MAX_TREE_DEPTH = 10
# each transition draws a uniform per possible leaf (2^depth per chain): 2^15 is 32,768
MAX_TREE_DEPTH_LIMIT = 15


# -- when it stops ----------------------------------------------------------------------------


def uturn(v_begin: Tensor, v_end: Tensor, rho: Tensor) -> Tensor:
    """The generalized no-U-turn criterion (Betancourt 2017, eq. A.4; Stan's
    ``compute_criterion``): a trajectory whose momenta sum to ``rho`` has turned when the
    velocity ``v = M^{-1} p`` at either end no longer points along ``rho``. ``[..., dim]``
    tensors in, a bool tensor ``[...]`` out (True: turned)."""
    return ((v_begin * rho).sum(-1) <= 0) | ((v_end * rho).sum(-1) <= 0)


def merge_turning(
    metric: Metric,
    p_a_out: Tensor,
    p_a_in: Tensor,
    rho_a: Tensor,
    p_b_in: Tensor,
    p_b_out: Tensor,
    rho_b: Tensor,
) -> Tensor:
    """Whether joining adjacent subtrees ``a`` and ``b`` makes a U-turn (Stan >= 2.26).

    ``*_out`` are the momenta at the far ends, ``*_in`` at the two leaves where the subtrees
    touch, ``rho_*`` their momentum sums. Besides the joined trajectory, Stan checks ``a`` plus
    ``b``'s first leaf and ``a``'s last leaf plus ``b``, which catches U-turns that the two ends
    alone miss (e.g. on Gaussians where the whole trajectory looks straight). The criterion is
    symmetric in its ends, so it does not matter which of ``a`` and ``b`` comes first in time.
    """
    v_a_out, v_b_out = metric.velocity(p_a_out), metric.velocity(p_b_out)
    return (
        uturn(v_a_out, v_b_out, rho_a + rho_b)
        | uturn(v_a_out, metric.velocity(p_b_in), rho_a + p_b_in)
        | uturn(metric.velocity(p_a_in), v_b_out, rho_b + p_a_in)
    )


def checkpoint_levels(leaf: int | Tensor) -> tuple[int | Tensor, int | Tensor]:
    """Checkpoint levels ``(lo, hi)`` for leaf ``leaf`` (0-based) of a subtree being built.

    An even leaf is stored at level ``hi`` (the number of one bits of ``leaf // 2``); it starts
    subtrees of every size that is a power of two. At an odd leaf, the subtrees of sizes
    ``2, 4, ..., 2^k`` (``k`` the number of trailing one bits of ``leaf``) end; the one of size
    ``2^j`` started at the leaf stored at level ``hi - j + 1``. Returns ``lo = hi + 1`` (nothing
    to check) for even leaves. As NumPyro's ``_leaf_idx_to_ckpt_idxs``.
    """
    hi = _popcount(leaf >> 1)
    trailing_ones = _popcount((~leaf & (leaf + 1)) - 1)  # the lowest zero bit, minus one
    return hi - trailing_ones + 1, hi


def _column(v: int | Tensor) -> int | Tensor:
    """A level or index that is an int, a scalar tensor or one per chain ``[chains]``, shaped
    to broadcast against ``[chains, levels]`` (``[1, 1]`` or ``[chains, 1]``)."""
    return v.reshape(-1, 1) if isinstance(v, Tensor) else v


def _popcount(n: int | Tensor) -> int | Tensor:
    """The number of one bits of a non-negative int or int64 tensor (< 2^31)."""
    if isinstance(n, Tensor):
        return ((n[..., None] >> torch.arange(31, device=n.device)) & 1).sum(-1)
    return bin(n).count("1")


def subtree_turning(
    metric: Metric,
    lo: int | Tensor,
    hi: int | Tensor,
    ck_rho: Tensor,
    ck_p: Tensor,
    ck_p_prev: Tensor,
    rho: Tensor,
    p: Tensor,
    p_prev: Tensor,
) -> Tensor:
    """Whether any subtree ending at the current leaf has turned, from the checkpoints.

    ``ck_rho``, ``ck_p``, ``ck_p_prev`` ``[chains, levels, dim]``: at each level, the momentum
    sum of the subtree's leaves before the stored leaf, the stored leaf's momentum and its
    predecessor's. ``rho`` is the sum up to the leaf before the current one, ``p`` and
    ``p_prev`` the current and previous leaf's momenta. The subtree starting at level ``i``'s
    leaf has halves split at level ``i + 1``'s leaf (the current leaf for ``i = hi``); each
    half's ends and sums come from differences of the stored sums, and ``merge_turning``
    checks the join, for the levels ``lo..hi`` (from ``checkpoint_levels``; ints, scalar
    tensors or one per chain ``[chains]``; masks over all levels, so the shapes never change).
    Returns ``[chains]`` bool.
    """
    idx = torch.arange(ck_rho.shape[1], device=p.device)
    lo, hi = _column(lo), _column(hi)  # per-chain levels broadcast against [chains, levels]
    last = (idx == hi)[..., None]  # the second half of the smallest subtree: this leaf
    split_rho = torch.where(last, rho[:, None], ck_rho.roll(-1, 1))
    split_p = torch.where(last, p[:, None], ck_p.roll(-1, 1))
    split_p_prev = torch.where(last, p_prev[:, None], ck_p_prev.roll(-1, 1))
    turned = merge_turning(
        metric,
        ck_p,  # a: first leaf of the subtree
        split_p_prev,  # a: last leaf of the first half
        split_rho - ck_rho,  # a: momentum sum of the first half
        split_p,  # b: first leaf of the second half
        p[:, None],  # b: the current leaf
        (rho + p)[:, None] - split_rho,  # b: momentum sum of the second half
    )
    return (turned & ((idx >= lo) & (idx <= hi))).any(1)


# Checkpoint levels checked at once in the compiled loop: a leaf ends subtrees at as many
# levels as its index has trailing one bits, at most 2 for 7 leaves in 8 (the eighth checks every
# level).
WINDOW = 2


def _turning_in_window(
    metric: Metric,
    lo: Tensor,
    hi: Tensor,
    ck: tuple[Tensor, Tensor, Tensor],
    rho: Tensor,
    p: Tensor,
    p_prev: Tensor,
) -> Tensor:
    """``subtree_turning`` for tensor levels ``lo..hi`` (scalars, or one per chain) on the
    ``WINDOW`` levels ending at ``hi`` when they hold ``lo..hi`` for every chain, on every
    level otherwise (``torch.cond``: one branch runs). The same per-level dot products as the
    masked full arrays, so the same answer at a fraction of the cost (measured: each level
    checked costs about 7 us a leaf at 100-D and 64 chains, compiled; 9 levels at the default
    depth 10, where most leaves need one or two)."""
    start = (hi - (WINDOW - 1)).clamp(min=0)

    def window(*ck: Tensor) -> Tensor:
        idx = _column(start) + torch.arange(WINDOW, device=p.device)  # [1|chains, WINDOW]
        idx = idx.expand(p.shape[0], -1)[..., None].expand(-1, -1, p.shape[-1])
        ck = tuple(c.gather(1, idx) for c in ck)
        return subtree_turning(metric, lo - start, hi - start, *ck, rho, p, p_prev)

    def every(*ck: Tensor) -> Tensor:
        return subtree_turning(metric, lo, hi, *ck, rho, p, p_prev)

    return torch.cond((lo < start).any(), every, window, ck)


# -- how the proposal is chosen ---------------------------------------------------------------


def uniform_progressive(log_w_sum: Tensor, log_w: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Multinomial sampling within a subtree, one leaf at a time (Betancourt 2017, A.3.2).

    A new leaf of log-weight ``log_w`` (``-H`` up to a constant) replaces the current pick with
    probability ``w / (W + w)``, ``W = exp(log_w_sum)`` the weight of the leaves before it; by
    induction every leaf ends up picked with probability proportional to its weight. ``u``
    uniform on [0, 1). Returns (take the new leaf, the new ``log W``).
    """
    total = torch.logaddexp(log_w_sum, log_w)
    return torch.log(u) < log_w - total, total


def biased_progressive(log_w_tree: Tensor, log_w_subtree: Tensor, u: Tensor) -> Tensor:
    """Between subtrees: take the new subtree's pick with probability ``min(1, W_new / W_old)``
    (Betancourt 2017, A.3.2; Stan's ``transition``), which favours points far from the start
    and still leaves the target invariant. Returns [chains] bool."""
    return torch.log(u) < log_w_subtree - log_w_tree


# -- random numbers: drawn up front, so that a transition draws the same shapes every time ----


def _uniforms(
    table: Tensor, stream: str, index: int | Tensor, max_depth: int, base: Tensor | None = None
) -> Tensor:
    """Row ``index`` of ``stream`` in a transition's table of uniforms ``[rows, chains]``
    (``_table_rows(max_depth)`` rows, from the user's generator): "leaf" rows ``0 ..
    2^max_depth - 2`` (the tree's leaves in order), then "direction" and "merge" rows, one
    per depth (a direction row past the last depth reads the last: it is never used).

    ``index`` is an int, a scalar tensor (every chain at the same leaf) or one per chain
    ``[chains]``; with ``base`` ``[chains]``, ``table`` is a block's tables stacked ``[block
    * rows, chains]`` and chain ``j`` reads row ``base[j] + row`` (its own transition's table):
    one number gathered per chain, the table never copied."""
    leaves = (1 << max_depth) - 1
    if stream == "direction":
        last = max_depth - 1
        index = min(index, last) if isinstance(index, int) else index.clamp(max=last)
    row = index + {"leaf": 0, "direction": leaves, "merge": leaves + max_depth}[stream]
    if base is not None:
        row = base + row
    if isinstance(row, int):
        return table[row]
    if row.ndim == 0:
        return table.index_select(0, row.reshape(1))[0]  # a tensor index: no host sync
    return table.gather(0, row.reshape(1, -1))[0]  # one row per chain


def _table_rows(max_depth: int) -> int:
    """Uniforms per chain per transition: one per possible leaf, two per depth."""
    return (1 << max_depth) - 1 + 2 * max_depth


# -- how a trajectory grows -------------------------------------------------------------------


class _Tree(NamedTuple):
    """Every chain's trajectory so far, in fixed shapes (chains that finished are masked, not
    dropped), so that one loop body serves the eager and the compiled loop."""

    live: Tensor  # [chains] bool: still building its tree
    accept_sum: Tensor  # sum over leaves of min(1, exp(H0 - H))
    n_leaf: Tensor  # [chains] long: leapfrog steps taken (the real gradient count)
    depth: Tensor  # [chains] long: the tree depth it ended with
    diverged: Tensor  # [chains] bool
    log_w: Tensor  # log of the tree's total weight
    rho: Tensor  # the tree's momentum sum
    # the tree's pick and its two ends, each a point packed as one tensor (see _pack)
    pick: Tensor
    back: Tensor
    front: Tensor
    # the subtree being built: direction, latest leaf, its own pick, weight, momentum sum and
    # checkpoints ([chains, levels, dim] each, see subtree_turning)
    forward: Tensor
    leaf: Tensor
    sub_pick: Tensor
    sub_log_w: Tensor
    sub_rho: Tensor
    ck: tuple[Tensor, Tensor, Tensor]


def _pack(x: Tensor, log_prob: Tensor, score: Tensor, p: Tensor) -> Tensor:
    """A point of a trajectory as one ``[chains, 3 dim + 1]`` tensor ``(x, log p, score, p)``:
    the loop selects and carries whole points, one operation and one buffer each instead of
    four (measured, 100-D, 64 chains: see docs/design.md)."""
    return torch.cat([x, log_prob[:, None], score, p], -1)


def _dim(point: Tensor) -> int:
    """The dimension of the positions in a packed point."""
    return (point.shape[-1] - 1) // 3


def _unpack(point: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x, log p, score, p)`` of a packed point (views)."""
    d = _dim(point)
    return point[:, :d], point[:, d], point[:, d + 1 : 2 * d + 1], _momentum(point)


def _momentum(point: Tensor) -> Tensor:
    """The momentum of a packed point (a view; one slice, where ``_unpack`` makes four)."""
    return point[:, 2 * _dim(point) + 1 :]


def _add_leaf(
    metric: Metric,
    h0: Tensor,
    accept_sum: Tensor,
    log_w_sum: Tensor,
    pick: Tensor,
    new_leaf: tuple[Tensor, Tensor, Tensor],
    u: Tensor,
    rho: Tensor,
    p_prev: Tensor,
    ck: tuple[Tensor, Tensor, Tensor],
    lo: int | Tensor,
    hi: int | Tensor,
    store: int | Tensor,
):
    """The bookkeeping of one new leaf of a subtree, ``new_leaf = (point, log p, p)`` (the
    packed point, see ``_pack``, and two of its parts): its
    energy and weight, the acceptance statistic, the multinomial pick, the checkpoints and the
    U-turn and divergence checks; the leaf is stored at checkpoint level ``store`` (-1: not
    stored). ``lo``, ``hi``, ``store``: ints (eager: levels outside ``lo..hi`` are skipped),
    scalar tensors (compiled: every level, masked; the same values) or ``[chains]`` tensors
    (chains at different leaves: ``nuts_stepwise``). Returns the updated values
    and ``stop`` (diverged or turned) and ``diverged``, ``[chains]``.
    """
    point, lp, p = new_leaf
    energy = torch.nan_to_num(metric.kinetic(p) - lp, nan=math.inf)
    log_w = h0 - energy
    diverged = ~(energy - h0 <= MAX_ENERGY_ERROR)  # NaN and inf too
    accept_sum = accept_sum + torch.nan_to_num(log_w.clamp(max=0).exp(), nan=0.0)
    take, log_w_sum = uniform_progressive(log_w_sum, log_w, u)
    pick = select(take, point, pick)
    ints = not isinstance(lo, Tensor)
    if not (ints and store < 0):  # an even leaf: it may start subtrees
        at = (torch.arange(ck[0].shape[1], device=p.device) == _column(store))[..., None]
        ck = tuple(
            torch.where(at, v[:, None], c) for v, c in zip((rho, p, p_prev), ck, strict=True)
        )
    if ints and lo > hi:  # no subtree ends at an even leaf
        turned = torch.zeros_like(diverged)
    elif ints:  # levels lo..hi, and hi + 1 as the split of level hi's subtree (if stored)
        window = tuple(c[:, lo : hi + 2] for c in ck)
        turned = subtree_turning(metric, 0, hi - lo, *window, rho, p, p_prev)
    elif ck[0].shape[1] > WINDOW:
        turned = _turning_in_window(metric, lo, hi, ck, rho, p, p_prev)
    else:
        turned = subtree_turning(metric, lo, hi, *ck, rho, p, p_prev)
    return accept_sum, log_w_sum, pick, rho + p, ck, diverged | turned, diverged


def _grow(
    target: Density,
    metric: Metric,
    h: Tensor,
    h0: Tensor,
    t: _Tree,
    depth: int | Tensor,
    leaf: int | Tensor,
    u: Tensor,
) -> _Tree:
    """Leaf ``leaf`` of the current subtree (of ``2^depth`` leaves), for every live chain: one
    leapfrog step from the latest leaf in the subtree's direction, then its bookkeeping
    (``_add_leaf``); a chain whose subtree turns or diverges ends with the tree's pick so far.
    ``u`` ``[chains]`` uniform; ``depth`` and ``leaf`` ints, scalar tensors or ``[chains]``."""
    x, lp, score, p = _unpack(t.leaf)
    new, p_new = leapfrog(target, State(x, lp, score), p, torch.where(t.forward, h, -h), metric, 1)
    point = _pack(new.x, new.log_prob, new.score, p_new)
    new_leaf = (point, new.log_prob, p_new)
    lo, hi = checkpoint_levels(leaf)
    store = hi if isinstance(leaf, int) and leaf % 2 == 0 else -1
    if isinstance(leaf, Tensor):  # a scalar or one per chain
        store = torch.where(leaf % 2 == 0, hi, -1)
    accept_sum, log_w, pick, rho, ck, stop, diverged = _add_leaf(
        metric, h0, t.accept_sum, t.sub_log_w, t.sub_pick, new_leaf, u, t.sub_rho, p, t.ck, lo, hi,
        store,
    )  # fmt: skip
    live = t.live
    stop = live & stop
    return t._replace(
        live=live & ~stop,
        accept_sum=torch.where(live, accept_sum, t.accept_sum),
        n_leaf=t.n_leaf + live.long(),
        depth=torch.where(stop, depth, t.depth),
        diverged=t.diverged | (stop & diverged),
        # the subtree's values of a finished chain are never read again: not masked
        leaf=point,
        sub_pick=pick,
        sub_log_w=log_w,
        sub_rho=rho,
        ck=ck,
    )


def _merge(
    metric: Metric,
    table: Tensor,
    max_depth: int,
    t: _Tree,
    depth: int | Tensor,
    complete,
    base: Tensor | None = None,
) -> _Tree:
    """Where the subtree of ``2^depth`` leaves is ``complete`` (a bool, or a bool tensor in the
    compiled loop, which runs this after every leaf; ``[chains]`` where chains are at different
    leaves): join it to the tree (its pick replaces the tree's with probability ``min(1, W_new
    / W_old)``), stop the chains whose joined tree turned or reached ``max_depth``, and start
    the next subtree in a fresh random direction. ``base``: see ``_uniforms``."""
    complete = torch.as_tensor(complete, device=t.live.device)
    m = t.live & complete
    u_merge = _uniforms(table, "merge", depth, max_depth, base)
    take = biased_progressive(t.log_w, t.sub_log_w, u_merge)
    fwd = t.forward
    back_p, front_p = _momentum(t.back), _momentum(t.front)
    p_out = torch.where(fwd[:, None], back_p, front_p)  # the end left behind
    p_in = torch.where(fwd[:, None], front_p, back_p)  # where the subtree began
    first_p = t.ck[1][:, 0]  # level 0 holds the subtree's first leaf
    turned = merge_turning(metric, p_out, p_in, t.rho, first_p, _momentum(t.leaf), t.sub_rho)
    stop = m & (turned | (depth + 1 >= max_depth))
    front = select(m & fwd, t.leaf, t.front)
    back = select(m & ~fwd, t.leaf, t.back)
    forward = _uniforms(table, "direction", depth + 1, max_depth, base) < 0.5
    edge = select(forward, front, back)
    return t._replace(
        live=t.live & ~stop,
        depth=torch.where(stop, depth + 1, t.depth),
        log_w=torch.where(m, torch.logaddexp(t.log_w, t.sub_log_w), t.log_w),
        rho=torch.where(m[:, None], t.rho + t.sub_rho, t.rho),
        pick=select(m & take, t.sub_pick, t.pick),
        back=back,
        front=front,
        # the next subtree (reset wherever a subtree completed; unused by finished chains)
        forward=torch.where(complete, forward, fwd),
        leaf=select(complete, edge, t.leaf),
        sub_pick=select(complete, edge, t.sub_pick),  # replaced at its first leaf
        sub_log_w=torch.where(complete, -math.inf, t.sub_log_w),
        sub_rho=torch.where(complete.reshape(-1, 1), 0.0, t.sub_rho),
        # ck is not reset: a subtree reads only the levels it wrote (see checkpoint_levels)
    )


def _build_eager(target, metric, h, h0, table, max_depth: int, t: _Tree) -> _Tree:
    """The trajectory loop in Python: subtree by subtree, leaf by leaf, until no chain is
    live (one host sync a leaf)."""
    for depth in range(max_depth):
        size = 1 << depth
        for leaf in range(size):
            t = _grow(target, metric, h, h0, t, depth, leaf, table[size - 1 + leaf])
            if not t.live.any():
                return t
        t = _merge(metric, table, max_depth, t, depth, True)
        if not t.live.any():
            break
    return t


def _iteration(
    target, metric, h, h0, table, max_depth: int, depth: Tensor, leaf: Tensor, t, base=None
):
    """One iteration of the compiled loop: leaf ``leaf`` of the subtree of ``2^depth`` leaves
    for every live chain, then ``_merge`` where that completes the subtree. Returns the next
    ``(depth, leaf)`` (scalar tensors, or ``[chains]`` in ``nuts_stepwise``) and the tree."""
    size = torch.bitwise_left_shift(torch.ones_like(depth), depth)
    u = _uniforms(table, "leaf", size - 1 + leaf, max_depth, base)
    t = _grow(target, metric, h, h0, t, depth, leaf, u)
    complete = leaf == size - 1
    t = _merge(metric, table, max_depth, t, depth, complete, base)
    return depth + complete.long(), torch.where(complete, 0, leaf + 1), t


def _build_compiled(target, metric, h, h0, table, max_depth: int, t: _Tree) -> _Tree:
    """The same loop as one ``torch``'s ``while_loop`` (traced inside ``torch.compile``): one
    leaf of every live chain per iteration, ``_merge`` masked to the iterations that complete
    a subtree; no host sync until every chain has finished."""
    zero = torch.zeros((), dtype=torch.long, device=t.live.device)

    def body(carry):
        depth, leaf, t = carry
        return _iteration(target, metric, h, h0, table, max_depth, depth, leaf, t)

    return while_loop_tree(lambda carry: carry[2].live.any(), body, (zero, zero.clone(), t))[2]


def nuts_step(
    target: Density,
    state: State,
    step_size: float | Tensor,
    generator: torch.Generator | None = None,
    *,
    inv_mass: Metric | Tensor | None = None,
    max_tree_depth: int = DEFAULT_MAX_TREE_DEPTH,
) -> tuple[State, Info]:
    """One multinomial NUTS transition per chain (Betancourt 2017; Stan's ``base_nuts``).

    Draws ``p ~ N(0, M)``, then doubles the trajectory (random direction each time) until it
    makes a U-turn, a subtree diverges (energy error > ``MAX_ENERGY_ERROR``) or
    ``max_tree_depth`` doublings (``2^max_tree_depth - 1`` leapfrog steps) are done. A subtree
    that turns inside or diverges is discarded. ``Info.accept_prob`` is Stan's acceptance
    statistic, the mean of ``min(1, exp(H0 - H))`` over every leaf built (dual averaging tunes
    it to 0.8); ``Info.extra`` holds ``energy`` (``H`` at the draw, for E-BFMI), ``tree_depth``
    and ``n_leapfrog``, each ``[chains]``.

    Random numbers: the momenta and a table of uniforms for every leaf, direction and merge a
    tree of ``max_tree_depth`` could need (``[2^max_tree_depth - 1 + 2 max_tree_depth,
    chains]``) come from ``generator`` up front, so a transition draws the same shapes however
    its trees grow (the runner can pre-draw them and compile blocks of transitions). Traced
    by ``torch.compile``, the loop over leaves is a ``while_loop`` (``_build_compiled``);
    eagerly, a Python loop (``_build_eager``); both run the same ``_grow`` and ``_merge`` on
    the same numbers.
    """
    if not isinstance(max_tree_depth, int) or isinstance(max_tree_depth, bool):
        raise ValueError(f"max_tree_depth must be an int >= 1; got {max_tree_depth!r}")
    if not 1 <= max_tree_depth <= MAX_TREE_DEPTH_LIMIT:
        raise ValueError(
            f"max_tree_depth must be between 1 and {MAX_TREE_DEPTH_LIMIT}; got {max_tree_depth} "
            f"(a transition draws 2^max_tree_depth uniforms per chain up front)"
        )
    if state.score is None:
        raise ValueError("NUTS needs the score: build the state with kernels.init(target, x)")
    metric = as_metric(inv_mass, state.x)
    chains = state.x.shape[0]
    h = torch.as_tensor(step_size, dtype=state.x.dtype, device=state.x.device).expand(chains)
    p0 = metric.momentum(state.x, generator)
    table = rand((_table_rows(max_tree_depth), chains), generator, state.x.dtype, state.x.device)
    direction = _uniforms(table, "direction", 0, max_tree_depth)
    tree, h0 = _start_tree(metric, state, p0, direction, max_tree_depth)
    build = _build_compiled if torch.compiler.is_compiling() else _build_eager
    tree = build(target, metric, h, h0, table, max_tree_depth, tree)
    return _finish(metric, state.x, tree)


def _start_tree(
    metric: Metric, state: State, p0: Tensor, direction: Tensor, max_depth: int
) -> tuple[_Tree, Tensor]:
    """A trajectory of one point (the state with momenta ``p0``), its first subtree going
    forward where ``direction < 0.5``; and the energy ``H0`` at the start."""
    x0 = state.x
    chains, dim = x0.shape
    dtype, device = x0.dtype, x0.device

    point = _pack(x0, state.log_prob, state.score, p0)

    def start():  # fresh tensors per field: the loop's carried values must not alias
        return point.clone()

    levels = max(max_depth - 1, 1)  # checkpoints: a subtree of 2^d leaves needs d levels
    zeros = torch.zeros(chains, dtype=dtype, device=device)
    never = torch.zeros(chains, dtype=torch.bool, device=device)
    tree = _Tree(
        live=~never,
        accept_sum=zeros,
        n_leaf=torch.zeros(chains, dtype=torch.long, device=device),
        depth=torch.zeros(chains, dtype=torch.long, device=device),
        diverged=never.clone(),
        log_w=zeros.clone(),  # the start has weight exp(0)
        rho=p0.clone(),
        pick=start(),
        back=start(),
        front=start(),
        forward=direction < 0.5,
        leaf=start(),
        sub_pick=start(),
        sub_log_w=torch.full((chains,), -math.inf, dtype=dtype, device=device),
        sub_rho=torch.zeros_like(p0),
        ck=tuple(torch.zeros(chains, levels, dim, dtype=dtype, device=device) for _ in range(3)),
    )
    return tree, metric.kinetic(p0) - state.log_prob


def _finish(metric: Metric, x0: Tensor, tree: _Tree) -> tuple[State, Info]:
    """The transition's outcome from a finished tree: its pick, and the ``Info``."""
    x, lp, score, p = _unpack(tree.pick)
    energy = metric.kinetic(p) - lp
    moved = (x != x0).any(-1)
    accept = (tree.accept_sum / tree.n_leaf).clamp(0, 1)
    extra = {
        "energy": energy,
        "tree_depth": tree.depth,
        "n_leapfrog": tree.n_leaf,
        "diverged": tree.diverged,  # per draw, so that the runner keeps where they happened
    }
    info = make_info(moved, accept, torch.log(accept), tree.diverged, tree.n_leaf, extra)
    return State(x.contiguous(), lp.contiguous(), score.contiguous()), info


# -- chains that do not wait for each other -----------------------------------------------------


class _Walk(NamedTuple):
    """Every chain's transition in progress, each at its own subtree and leaf
    (``nuts_stepwise``)."""

    tree: _Tree
    depth: Tensor  # [chains] long: the depth of the subtree being built
    leaf: Tensor  # [chains] long: the next leaf of that subtree
    h: Tensor  # [chains] step size
    h0: Tensor  # [chains] energy at the start
    x0: Tensor  # [chains, dim] the start
    base: Tensor  # [chains] long: first row of the chain's table in the block's stacked tables


def _stepwise_start(
    target: Density,
    state: State,
    h: Tensor,
    draws: list[Tensor],
    c: Tensor,
    previous: _Walk | None,
    *,
    inv_mass: Metric | Tensor | None = None,
    max_tree_depth: int = DEFAULT_MAX_TREE_DEPTH,
) -> _Walk:
    """Chain ``j`` starts its transition ``c[j]`` of the block: the momenta and the table of
    uniforms that ``nuts_step`` would draw for it (``draws``: the block's ``[block, chains,
    dim]`` normals and ``[block, rows, chains]`` uniforms), gathered per chain. The
    checkpoints of ``previous`` are kept (the same tensors: not copied): a subtree reads only
    the levels it wrote (``checkpoint_levels``)."""
    z, table = draws
    metric = as_metric(inv_mass, state.x)
    chains = state.x.shape[0]
    p0 = metric.momentum(state.x, PreDrawn([z[c, torch.arange(chains, device=c.device)]]))
    base = c * table.shape[1]
    stacked = table.reshape(-1, chains)
    direction = _uniforms(stacked, "direction", 0, max_tree_depth, base)
    tree, h0 = _start_tree(metric, state, p0, direction, max_tree_depth)
    if previous is not None:
        tree = tree._replace(ck=previous.tree.ck)
    zero = torch.zeros_like(c)
    return _Walk(tree, zero, zero.clone(), h, h0, state.x, base)


def _stepwise_advance(
    target: Density,
    w: _Walk,
    draws: list[Tensor],
    *,
    inv_mass: Metric | Tensor | None = None,
    max_tree_depth: int = DEFAULT_MAX_TREE_DEPTH,
) -> _Walk:
    """One leaf of every live chain's tree, each at its own subtree and leaf (``_iteration``);
    a chain whose tree has finished keeps its place (it is restarted or idle)."""
    metric = as_metric(inv_mass, w.x0)
    stacked = draws[1].reshape(-1, w.x0.shape[0])
    depth, leaf, tree = _iteration(
        target, metric, w.h, w.h0, stacked, max_tree_depth, w.depth, w.leaf, w.tree, w.base
    )
    live = tree.live  # a finished tree's place stays inside the table (depth < max_depth)
    return w._replace(
        tree=tree, depth=torch.where(live, depth, w.depth), leaf=torch.where(live, leaf, w.leaf)
    )


def _stepwise_finish(
    target: Density,
    w: _Walk,
    *,
    inv_mass: Metric | Tensor | None = None,
    max_tree_depth: int = DEFAULT_MAX_TREE_DEPTH,
) -> tuple[State, Info]:
    """``nuts_step``'s outcome for every chain (used where its tree has finished)."""
    return _finish(as_metric(inv_mass, w.x0), w.x0, w.tree)


nuts_stepwise = Stepwise(
    _stepwise_start, _stepwise_advance, lambda w: ~w.tree.live, _stepwise_finish
)


def make_info(
    accepted: Tensor,
    accept_prob: Tensor,
    log_accept_ratio: Tensor,
    diverged: Tensor,
    grad_evals: Tensor,
    extra: dict[str, Tensor],
) -> Info:
    """An ``Info`` with per-chain gradient counts and the kernel's extra per-chain values."""
    return Info(accepted, accept_prob, log_accept_ratio, diverged, grad_evals, extra=extra)


KERNELS["nuts"] = Kernel(
    "nuts",
    nuts_step,
    0.8,  # Stan's default target for the acceptance statistic above
    True,
    True,
    "No-U-Turn sampler (multinomial, Stan's criterion)",
    hamiltonian=True,
    # blocks chain by chain with mcmc.sample(stepwise=True); lock step by default (the same
    # chains): measured on the 100-D Gaussians, 64 chains, 500 + 1000 transitions, stepwise
    # took 1.5x fewer leaf iterations and ran 1.04-1.43x faster, but compiled 7-16 s longer,
    # so the whole run took longer; eagerly 2.5x slower (per-chain bookkeeping every leaf;
    # benchmarks/results/mcmc_nuts_async.md)
    stepwise=nuts_stepwise,
)
