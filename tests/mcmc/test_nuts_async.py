"""NUTS blocks whose chains do not wait for each other, against the lock-step blocks.

In a block of the runner, NUTS's chains can run their transitions back to back
(``blocks.block_stepwise`` over ``nuts.nuts_stepwise``): each chain starts its next tree at
the leaf after its last one ended, instead of waiting for the longest tree of all chains
(``runner._block_scan`` / ``_block_eager`` over ``nuts_step``). Each chain must get the same
numbers (momenta, uniforms, jitter), step sizes and trees either way, so the chains are the
same: bit for bit eagerly (the same ATen kernels on the same per-chain values; the stepwise
loop reads the checkpoint levels as per-chain tensors over all levels, masked, which
test_nuts_compiled shows equal to the eager int windows).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from scorelab import densities, mcmc
from scorelab.mcmc import kernels, nuts
from tests.mcmc.test_nuts import _gen

F64 = torch.float64
NUTS = kernels.KERNELS["nuts"]


def _gaussian_2d():
    """A correlated 2-D Gaussian (correlation 0.9, scales 1 and 3): trees of several depths."""
    cov = torch.tensor([[1.0, 2.7], [2.7, 9.0]], dtype=F64)
    return densities.Gaussian(torch.tensor([0.5, -1.0], dtype=F64), cov)


def _sample(monkeypatch, stepwise: bool, counter: list | None = None, **kw):
    """``mcmc.sample`` with NUTS's blocks stepwise (``stepwise=True``) or in lock step;
    ``counter`` counts the stepwise loop's iterations (leaves)."""
    k = NUTS
    if stepwise and counter is not None:

        def advance(*args, **params):
            counter.append(1)
            return nuts.nuts_stepwise.advance(*args, **params)

        k = dataclasses.replace(k, stepwise=dataclasses.replace(k.stepwise, advance=advance))
    with monkeypatch.context() as m:
        m.setitem(kernels.KERNELS, "nuts", k)
        kw = dict(chains=8, dtype=F64, block_size=10, progress=False, compile=False) | kw
        return mcmc.sample(
            kw.pop("target", _gaussian_2d()), "nuts", generator=_gen(5), stepwise=stepwise, **kw
        )


CASES = {
    "fixed step": dict(warmup=0, steps=40, step_size=0.4),
    # per-chain dual averaging inside blocks and Stan's mass windows between them; jitter after
    "warm-up and jitter": dict(warmup=60, steps=30, step_jitter=0.3),
    # too large a step for the narrow direction and a depth cap: divergences and cut trees
    "divergences and depth cap": dict(warmup=0, steps=40, step_size=0.9, max_tree_depth=3),
    "dense metric": dict(warmup=60, steps=20, adapt_mass="dense"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_stepwise_blocks_give_the_lock_step_chains(case, monkeypatch):
    kw = CASES[case]
    a = _sample(monkeypatch, True, **kw)
    b = _sample(monkeypatch, False, **kw)
    assert torch.equal(a.samples, b.samples)
    assert a.extra.keys() == b.extra.keys() == {"energy", "tree_depth", "n_leapfrog", "diverged"}
    for name in a.extra:
        assert torch.equal(a.extra[name], b.extra[name]), name
    assert torch.equal(a.accept_rate, b.accept_rate)
    assert torch.equal(a.step_sizes, b.step_sizes)
    assert torch.equal(a.divergences, b.divergences)
    # the real per-chain leapfrog counts, warm-up and the step-size search included
    assert a.total_grad_evals == b.total_grad_evals and a.grad_evals == b.grad_evals
    sampled = int(a.extra["n_leapfrog"].sum())
    if kw["warmup"] == 0 and "step_size" in kw:  # nothing before sampling: exactly the leaves
        assert a.total_grad_evals == sampled
    else:  # the search and warm-up counted too
        assert a.total_grad_evals > sampled
    # the case does what it says: chains out of step (trees of several sizes), ...
    assert a.extra["n_leapfrog"].unique().numel() > 2
    if case == "divergences and depth cap":  # ... some divergent and some capped trees
        assert 0 < int(a.divergences.sum()) < a.samples.shape[0] * a.samples.shape[1]
        assert a.max_depth_hits() > 0
    if "step_size" not in kw:  # ... and per-chain step sizes from warm-up
        assert a.step_sizes.unique().numel() == a.step_sizes.numel()


def test_stepwise_loop_takes_the_longest_chain_leaves_per_block(monkeypatch):
    """A block of ``B`` transitions costs ``max_j sum_i n_ij`` loop iterations (each chain's
    leaves back to back) instead of the lock step's ``sum_i max_j n_ij``: counted."""
    counter: list = []
    res = _sample(monkeypatch, True, counter, warmup=0, steps=40, step_size=0.4)
    n = res.extra["n_leapfrog"].T.reshape(4, 10, -1)  # [blocks, transitions, chains]
    stepwise, lock_step = n.sum(1).max(1).values.sum(), n.max(2).values.sum(1).sum()
    assert len(counter) == int(stepwise)
    assert stepwise < lock_step


def test_per_chain_leaves_read_their_own_uniforms():
    """``_uniforms`` with per-chain rows in a block's stacked tables gathers
    ``table[c_j, row_j, j]``; the checkpoint levels of per-chain leaves are the ints'."""
    blocks, rows, chains, depth = 3, nuts._table_rows(4), 5, 4
    table = torch.rand(blocks, rows, chains, generator=_gen(1), dtype=F64)
    c = torch.tensor([0, 2, 1, 2, 0])
    leaf = torch.tensor([0, 3, 7, 14, 5])
    stacked, base = table.reshape(-1, chains), c * rows
    for stream, index in (("leaf", leaf), ("direction", leaf % 6), ("merge", leaf % 4)):
        got = nuts._uniforms(stacked, stream, index, depth, base)
        for j in range(chains):
            want = nuts._uniforms(table[c[j]], stream, int(index[j]), depth)[j]
            assert got[j] == want, (stream, j)
    lo, hi = nuts.checkpoint_levels(leaf)
    assert [(int(a), int(b)) for a, b in zip(lo, hi, strict=True)] == [
        nuts.checkpoint_levels(int(v)) for v in leaf
    ]


@pytest.mark.slow
def test_compiled_stepwise_blocks_give_the_eager_chains(monkeypatch):
    """The stepwise block as one ``while_loop`` under ``torch.compile`` against the eager
    loop (about 30 s of compiling). Positions and counts bit for bit at a fixed step (as in
    test_nuts_compiled); the acceptance statistic to Inductor's rounding of ``exp``."""
    kw = dict(warmup=0, steps=40, step_size=0.4, max_tree_depth=5)
    fast = _sample(monkeypatch, True, compile=True, **kw)
    slow = _sample(monkeypatch, True, compile=False, **kw)
    assert fast.compiled and not slow.compiled
    assert math.isfinite(fast.compile_time) and fast.compile_time > 0
    assert torch.equal(fast.samples, slow.samples)
    assert torch.equal(fast.extra["n_leapfrog"], slow.extra["n_leapfrog"])
    assert torch.equal(fast.extra["tree_depth"], slow.extra["tree_depth"])
    torch.testing.assert_close(fast.accept_rate, slow.accept_rate, rtol=0, atol=1e-12)
    assert fast.total_grad_evals == slow.total_grad_evals


def test_stepwise_is_refused_for_kernels_without_it():
    with pytest.raises(ValueError, match=r"stepwise=True applies to kernels .*nuts.*drop stepwise"):
        mcmc.sample(_gaussian_2d(), "hmc", chains=2, steps=2, warmup=0, stepwise=True)
    with pytest.raises(ValueError, match="stepwise must be True or False"):
        mcmc.sample(_gaussian_2d(), "nuts", chains=2, steps=2, warmup=0, stepwise="yes")
