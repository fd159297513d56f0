"""NUTS's compiled path against its eager one: the same trees, the same draws.

``nuts_step`` builds its trees with one of two loop drivers over the same ``_grow`` and
``_merge``: a Python loop (eager: ``_merge`` only where a subtree completes, checkpoint levels
as ints) and, traced by ``torch.compile``, a ``while_loop`` whose body (``_iteration``) runs
``_merge`` masked after every leaf with the levels as tensors. The fast test drives that body
in a Python loop (``while_loop`` itself runs it so, eagerly, but slowly); the slow one compiles
it through the runner.
"""

from __future__ import annotations

import math

import pytest
import torch

from scorelab import densities, mcmc
from scorelab.mcmc import kernels, nuts
from tests.mcmc.test_nuts import _correlated, _gen

F64 = torch.float64


def _loop_as_compiled(target, metric, h, h0, table, max_depth, t):
    """The compiled loop's iterations, driven from Python (what ``while_loop`` computes)."""
    depth = leaf = torch.zeros((), dtype=torch.long)
    while t.live.any():
        depth, leaf, t = nuts._iteration(target, metric, h, h0, table, max_depth, depth, leaf, t)
    return t


@pytest.mark.parametrize(
    "case",
    ["correlated", "ill-scaled with metric", "max depth", "diverging", "mixture"],
)
def test_compiled_loop_body_gives_the_eager_trees(case, monkeypatch):
    """Bit for bit: the same ATen kernels on the same numbers; masking (``torch.where``) keeps
    exactly the values the eager loop skips updating, and a level window of the eager
    checkpoint check computes the same per-level dot products as the masked full arrays."""
    kw: dict = {}
    if case == "correlated":
        target, step = _correlated(), 0.4
    elif case == "ill-scaled with metric":
        var = torch.logspace(0, 2, 20, dtype=F64)
        target, step = densities.Gaussian(torch.zeros(20, dtype=F64), torch.diag(var)), 0.5
        kw["inv_mass"] = var
    elif case == "max depth":  # tiny steps: every chain stops at the cap
        target, step, kw["max_tree_depth"] = _correlated(), 0.01, 4
    elif case == "diverging":  # a step far too large for the narrow coordinate
        target, step = densities.Gaussian(torch.zeros(2, dtype=F64), torch.diag(
            torch.tensor([1.0, 1e-2], dtype=F64))), 0.35  # fmt: skip
    else:
        target = densities.GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.5, 0.5]], [0.5, 0.7])
        step = 0.4
    x0 = target.sample(24, generator=_gen(1), dtype=F64)
    state = kernels.init(target, x0)
    eager = [nuts.nuts_step(target, state, step, _gen(s), **kw) for s in range(3)]
    monkeypatch.setattr(nuts, "_build_eager", _loop_as_compiled)
    masked = [nuts.nuts_step(target, state, step, _gen(s), **kw) for s in range(3)]
    for (a, ia), (b, ib) in zip(eager, masked, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.score, b.score)
        assert torch.equal(ia.accept_prob, ib.accept_prob)
        for name in ("n_leapfrog", "tree_depth", "diverged", "energy"):
            assert torch.equal(ia.extra[name], ib.extra[name]), name
    depths = torch.cat([i.extra["tree_depth"] for _, i in eager])
    if case == "max depth":
        assert (depths == 4).all()
    elif case == "diverging":
        assert torch.cat([i.diverged for _, i in eager]).any()
    else:  # trees of several depths: chains finished at different leaves
        assert depths.unique().numel() > 1


def test_a_transition_draws_fixed_shapes():
    """What makes NUTS a compilable kernel: the momenta and one table of uniforms per
    transition, whatever the trees do (the runner pre-draws them per block)."""
    from scorelab._utils import DrawRecorder

    target = _correlated()
    state = kernels.init(target, target.sample(8, generator=_gen(1), dtype=F64))
    calls = []
    for step in (0.01, 0.4, 5.0):  # long trees, short trees, divergences
        rec = DrawRecorder(_gen(2))
        nuts.nuts_step(target, state, step, rec, max_tree_depth=6)
        calls.append(rec.calls)
    rows = nuts._table_rows(6)
    assert rows == 2**6 - 1 + 2 * 6
    assert calls[0] == calls[1] == calls[2] == [("randn", (8, 5), F64), ("rand", (rows, 8), F64)]
    assert mcmc.KERNELS["nuts"].compilable
    with pytest.raises(ValueError, match="between 1 and 15"):
        nuts.nuts_step(target, state, 0.1, _gen(2), max_tree_depth=16)


@pytest.mark.slow
def test_compiled_nuts_gives_the_eager_chains():
    """Through the runner, same seed: the compiled blocks (a ``while_loop`` over leaves inside
    the ``scan`` over transitions) give the eager chains. At a fixed step size the positions
    are bit for bit equal: leapfrog is multiplies, adds and the same matrix product in both;
    Inductor's ``exp``/``log`` and its reduction order may differ from ATen's in the last
    bit, which moves only the acceptance statistic (compared to 1e-12) and could flip a
    multinomial choice only when a uniform falls within ~1e-16 of its threshold."""
    target = _correlated()
    kw = dict(chains=6, steps=40, warmup=0, step_size=0.3, max_tree_depth=5, dtype=F64)
    fast = mcmc.sample(target, "nuts", compile=True, generator=_gen(4), progress=False, **kw)
    slow = mcmc.sample(target, "nuts", compile=False, generator=_gen(4), progress=False, **kw)
    assert fast.compiled and not slow.compiled
    assert torch.equal(fast.samples, slow.samples)
    assert torch.equal(fast.extra["n_leapfrog"], slow.extra["n_leapfrog"])
    torch.testing.assert_close(fast.accept_rate, slow.accept_rate, rtol=0, atol=1e-12)
    assert fast.extra["tree_depth"].float().mean() > 1  # real trees, not single steps
    assert math.isfinite(fast.compile_time) and fast.compile_time > 0


def test_auto_compile_counts_the_lock_step_leaves():
    """``compile="auto"`` for NUTS: a transition costs its longest tree (lock step), the rate
    is the block's mean, and the remaining transitions compile at NUTS_AUTO_COMPILE_LEAVES."""
    from scorelab.mcmc.runner import NUTS_AUTO_COMPILE_LEAVES, nuts_auto_compile

    leaves = torch.tensor([[3, 7], [15, 1]])  # longest trees 7 and 15: 11 a transition
    at = -(-NUTS_AUTO_COMPILE_LEAVES // 11)  # the fewest remaining transitions that compile
    assert nuts_auto_compile(leaves, at) and not nuts_auto_compile(leaves, at - 1)
    assert not nuts_auto_compile(leaves, 0)


def test_auto_keeps_a_short_nuts_run_eager():
    target = _correlated()
    res = mcmc.sample(target, "nuts", chains=4, steps=60, warmup=40, generator=_gen(1),
                      progress=False)  # fmt: skip
    assert not res.compiled and res.compile_time == 0


@pytest.mark.slow
def test_auto_compiles_after_an_eager_block_with_the_same_chains(monkeypatch):
    """Long trees and enough transitions left: "auto" compiles after its first (eager) block,
    and the chains are those of an eager run (fixed step size: bit for bit)."""
    from scorelab.mcmc import runner

    monkeypatch.setattr(runner, "NUTS_AUTO_COMPILE_LEAVES", 500)
    target = _correlated()
    kw = dict(chains=6, steps=120, warmup=0, step_size=0.3, max_tree_depth=5, dtype=F64)
    auto = mcmc.sample(target, "nuts", compile="auto", generator=_gen(4), progress=False, **kw)
    eager = mcmc.sample(target, "nuts", compile=False, generator=_gen(4), progress=False, **kw)
    assert auto.compiled and not eager.compiled
    assert torch.equal(auto.samples, eager.samples)
    assert torch.equal(auto.extra["n_leapfrog"], eager.extra["n_leapfrog"])
