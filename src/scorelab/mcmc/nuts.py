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
depth and leaf), and a chain whose tree has finished leaves the batch: the live chains are
gathered into smaller tensors, so a finished chain costs no more gradient evaluations and no
bookkeeping. ``Info.grad_evals`` holds each chain's real count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from scorelab._utils import rand
from scorelab.densities.base import Density
from scorelab.mcmc.kernels import KERNELS, MAX_ENERGY_ERROR, Info, Kernel, State, leapfrog
from scorelab.mcmc.metric import Metric, as_metric

DEFAULT_MAX_TREE_DEPTH = 10


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


def checkpoint_levels(leaf: int) -> tuple[int, int]:
    """Checkpoint levels ``(lo, hi)`` for leaf ``leaf`` (0-based) of a subtree being built.

    An even leaf is stored at level ``hi`` (the number of one bits of ``leaf // 2``); it starts
    subtrees of every size that is a power of two. At an odd leaf, the subtrees of sizes
    ``2, 4, ..., 2^k`` (``k`` the number of trailing one bits of ``leaf``) end; the one of size
    ``2^j`` started at the leaf stored at level ``hi - j + 1``. Returns ``lo = hi + 1`` (nothing
    to check) for even leaves. As NumPyro's ``_leaf_idx_to_ckpt_idxs``.
    """
    hi = bin(leaf >> 1).count("1")
    trailing_ones = (~leaf & (leaf + 1)).bit_length() - 1
    return hi - trailing_ones + 1, hi


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
    checks the join, for the levels ``lo..hi`` (from ``checkpoint_levels``; masks over all
    levels, so the shapes never change). Returns ``[chains]`` bool.
    """
    idx = torch.arange(ck_rho.shape[1], device=p.device)
    last = (idx == hi)[None, :, None]  # the second half of the smallest subtree: this leaf
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


# -- how a trajectory grows -------------------------------------------------------------------


@dataclass
class _Live:
    """Per-chain tensors of the chains still building their trees (row ``i`` is chain
    ``ids[i]``). ``keep`` drops the finished ones from every tensor at once."""

    ids: Tensor
    h: Tensor  # step size
    h0: Tensor  # the Hamiltonian at the start
    accept_sum: Tensor  # sum over leaves of min(1, exp(H0 - H))
    log_w: Tensor  # log of the tree's total weight
    rho: Tensor  # the tree's momentum sum
    # the tree's current pick and its two ends (0: backward end, 1: forward end)
    pick: tuple[Tensor, Tensor, Tensor, Tensor]
    back: tuple[Tensor, Tensor, Tensor, Tensor]
    front: tuple[Tensor, Tensor, Tensor, Tensor]

    def keep(self, mask: Tensor) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            setattr(self, f.name, tuple(t[mask] for t in v) if isinstance(v, tuple) else v[mask])


@dataclass
class _Subtree:
    """The subtree being built: current leaf, its own pick and weight, and the checkpoints."""

    forward: Tensor  # [chains] bool: direction
    leaf: tuple[Tensor, Tensor, Tensor, Tensor]  # x, log p, score, p of the latest leaf
    pick: tuple[Tensor, Tensor, Tensor, Tensor]
    log_w: Tensor
    rho: Tensor  # momentum sum of the leaves so far
    ck: tuple[Tensor, Tensor, Tensor]  # [chains, levels, dim]: see subtree_turning

    def keep(self, mask: Tensor) -> None:
        _Live.keep(self, mask)  # type: ignore[arg-type]


def _where(mask: Tensor, a: tuple[Tensor, ...], b: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Per chain: ``a`` where ``mask``, else ``b`` (tuples of [chains] or [chains, dim])."""
    return tuple(
        torch.where(mask.view(-1, *([1] * (s.ndim - 1))), s, t) for s, t in zip(a, b, strict=True)
    )


def _add_leaf(
    metric: Metric,
    h0: Tensor,
    accept_sum: Tensor,
    log_w_sum: Tensor,
    pick: tuple[Tensor, Tensor, Tensor, Tensor],
    point: tuple[Tensor, Tensor, Tensor, Tensor],
    u: Tensor,
    rho: Tensor,
    p_prev: Tensor,
    ck: tuple[Tensor, Tensor, Tensor],
    lo: int,
    hi: int,
    store: int,
):
    """The bookkeeping of one new leaf ``point = (x, log p, score, p)`` of a subtree: its
    energy and weight, the acceptance statistic, the multinomial pick, the checkpoints and the
    U-turn and divergence checks; the leaf is stored at checkpoint level ``store`` (-1: not
    stored). Returns the updated values and ``stop`` (diverged or turned) and ``diverged``,
    ``[chains]``.
    """
    energy = torch.nan_to_num(metric.kinetic(point[3]) - point[1], nan=math.inf)
    log_w = h0 - energy
    diverged = ~(energy - h0 <= MAX_ENERGY_ERROR)  # NaN and inf too
    accept_sum = accept_sum + torch.nan_to_num(log_w.clamp(max=0).exp(), nan=0.0)
    take, log_w_sum = uniform_progressive(log_w_sum, log_w, u)
    pick = _where(take, point, pick)
    p = point[3]
    if store >= 0:  # an even leaf: it may start subtrees
        at = (torch.arange(ck[0].shape[1], device=p.device) == store)[None, :, None]
        ck = tuple(
            torch.where(at, v[:, None], c) for v, c in zip((rho, p, p_prev), ck, strict=True)
        )
    if lo > hi:  # no subtree ends at an even leaf
        turned = torch.zeros_like(diverged)
    else:  # levels lo..hi, and hi + 1 as the split of level hi's subtree (if stored)
        window = tuple(c[:, lo : hi + 2] for c in ck)
        turned = subtree_turning(metric, 0, hi - lo, *window, rho, p, p_prev)
    return accept_sum, log_w_sum, pick, rho + p, ck, diverged | turned, diverged


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
    """
    if not isinstance(max_tree_depth, int) or isinstance(max_tree_depth, bool):
        raise ValueError(f"max_tree_depth must be an int >= 1; got {max_tree_depth!r}")
    if not 1 <= max_tree_depth <= 30:
        raise ValueError(f"max_tree_depth must be between 1 and 30; got {max_tree_depth}")
    if state.score is None:
        raise ValueError("NUTS needs the score: build the state with kernels.init(target, x)")
    metric = as_metric(inv_mass, state.x)
    x0 = state.x
    chains, dim = x0.shape
    dtype, device = x0.dtype, x0.device
    h = torch.as_tensor(step_size, dtype=dtype, device=device).expand(chains).clone()
    p0 = metric.momentum(x0, generator)
    h0 = metric.kinetic(p0) - state.log_prob
    start = (x0, state.log_prob, state.score, p0)

    # what each chain ends with, written as it finishes
    out = [t.clone() for t in start]
    depth_out = torch.zeros(chains, dtype=torch.long, device=device)
    steps_out = torch.zeros(chains, dtype=torch.long, device=device)
    accept_out = torch.zeros(chains, dtype=dtype, device=device)
    diverged_out = torch.zeros(chains, dtype=torch.bool, device=device)

    live = _Live(
        ids=torch.arange(chains, device=device),
        h=h,
        h0=h0,
        accept_sum=torch.zeros(chains, dtype=dtype, device=device),
        log_w=torch.zeros(chains, dtype=dtype, device=device),  # the start has weight exp(0)
        rho=p0.clone(),
        pick=start,
        back=start,
        front=start,
    )

    def finish(done: Tensor, depth: int, steps: int, diverged: Tensor | None = None) -> None:
        ids = live.ids[done]
        for o, v in zip(out, live.pick, strict=True):
            o[ids] = v[done]
        depth_out[ids] = depth
        steps_out[ids] = steps
        accept_out[ids] = live.accept_sum[done] / steps
        if diverged is not None:
            diverged_out[ids] = diverged[done]

    levels = max(max_tree_depth - 1, 1)  # checkpoints: a subtree of 2^d leaves needs d levels
    for depth in range(max_tree_depth):
        n_live = live.ids.shape[0]
        forward = rand((n_live,), generator, dtype, device) < 0.5
        edge = _where(forward, live.front, live.back)
        zeros = [torch.zeros(n_live, levels, dim, dtype=dtype, device=device) for _ in range(3)]
        sub = _Subtree(
            forward=forward,
            leaf=edge,
            pick=tuple(t.clone() for t in edge),  # replaced at the first leaf; no aliasing
            log_w=torch.full((n_live,), -math.inf, dtype=dtype, device=device),
            rho=torch.zeros_like(edge[3]),
            ck=tuple(zeros),
        )
        size = 1 << depth
        for leaf in range(size):
            u = rand((n_live,), generator, dtype, device)
            lo, hi = checkpoint_levels(leaf)
            # one leapfrog step from the latest leaf in each chain's direction, then its
            # bookkeeping (the leaf stepped from is the previous one)
            x, lp, score, p = sub.leaf
            hs = torch.where(sub.forward, live.h, -live.h)
            new, p_new = leapfrog(target, State(x, lp, score), p, hs, metric, 1)
            point = (new.x, new.log_prob, new.score, p_new)
            live.accept_sum, sub.log_w, sub.pick, sub.rho, sub.ck, stop, diverged = _add_leaf(
                metric, live.h0, live.accept_sum, sub.log_w, sub.pick, point, u, sub.rho, p,
                sub.ck, lo, hi, hi if leaf % 2 == 0 else -1,
            )  # fmt: skip
            sub.leaf = point
            if stop.any():  # discard the subtree: the chain ends with the tree's pick so far
                finish(stop, depth, size + leaf, diverged)
                keep = ~stop
                live.keep(keep)
                sub.keep(keep)
                n_live = live.ids.shape[0]
                if n_live == 0:
                    break
        if n_live == 0:
            break
        # merge: the subtree's pick replaces the tree's with probability min(1, W_new / W_old)
        u = rand((n_live,), generator, dtype, device)
        live.pick = _where(biased_progressive(live.log_w, sub.log_w, u), sub.pick, live.pick)
        live.log_w = torch.logaddexp(live.log_w, sub.log_w)
        fwd = sub.forward
        p_out = torch.where(fwd[:, None], live.back[3], live.front[3])  # the end left behind
        p_in = torch.where(fwd[:, None], live.front[3], live.back[3])  # where the subtree began
        first_p = sub.ck[1][:, 0]  # level 0 holds the subtree's first leaf
        turned = merge_turning(metric, p_out, p_in, live.rho, first_p, sub.leaf[3], sub.rho)
        live.rho = live.rho + sub.rho
        live.front = _where(fwd, sub.leaf, live.front)
        live.back = _where(fwd, live.back, sub.leaf)
        stop = turned if depth + 1 < max_tree_depth else torch.ones_like(turned)
        if stop.any():
            finish(stop, depth + 1, 2 * size - 1)
            live.keep(~stop)
        if live.ids.shape[0] == 0:
            break

    x, lp, score, p = out
    energy = metric.kinetic(p) - lp
    moved = (x != x0).any(-1)
    accept = accept_out.clamp(0, 1)
    extra = {
        "energy": energy,
        "tree_depth": depth_out,
        "n_leapfrog": steps_out,
        "diverged": diverged_out,  # per draw, so that the runner keeps where they happened
    }
    info = make_info(moved, accept, torch.log(accept), diverged_out, steps_out, extra)
    return State(x, lp, score), info


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
    compilable=False,  # the tree's size differs per transition and per chain
)
