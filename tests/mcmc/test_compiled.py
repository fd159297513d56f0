"""The block engine: compiled blocks give the eager chains, compile once, and stay exact.

Compiling a block costs 5-30 s on 2 shared cores, so the default suite compiles twice (one
MALA and one HMC block); the exactness tests of test_kernels.py on the compiled path are
marked slow.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch._dynamo.utils import counters

from scorelab import densities, mcmc
from scorelab._utils import DrawRecorder, PreDrawn, randn
from scorelab.mcmc.adaptation import da_init, da_step_size
from scorelab.mcmc.kernels import get_kernel
from scorelab.mcmc.metric import Metric
from scorelab.mcmc.runner import _transition
from tests.mcmc.test_kernels import (
    TARGETS,
    _gen,
    assert_moments,
    run_and_check_moments,
)

F64 = torch.float64


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


def test_pre_drawn_numbers_replace_the_generator():
    rec = DrawRecorder(_gen(0))
    a = randn((3, 2), rec, F64)
    assert rec.calls == [("randn", (3, 2), F64)]
    assert torch.equal(randn((3, 2), PreDrawn([a]), F64), a)
    with pytest.raises(RuntimeError, match="more random numbers than its recorded dry run"):
        src = PreDrawn([a])
        randn((3, 2), src, F64), randn((3, 2), src, F64)


def test_eager_blocks_are_the_same_chains_for_any_block_size():
    """Random numbers are drawn per block in recorded order, so the block size changes the
    stream; but the same seed and block size give the same chains, eagerly or not."""
    kw = dict(chains=4, steps=60, warmup=40, dtype=F64, compile=False, progress=False)
    a = mcmc.sample(densities.Banana(), "mala", generator=_gen(3), **kw)
    b = mcmc.sample(densities.Banana(), "mala", generator=_gen(3), **kw)
    assert torch.equal(a.samples, b.samples)


@pytest.mark.parametrize("kernel", ["mala", "hmc", "nuts"])
def test_inference_mode_blocks_give_the_plain_eager_chains(kernel, monkeypatch):
    """Closed-form targets (``needs_autograd`` False) run eager blocks under
    ``torch.inference_mode``: the same chains, bit for bit, as the same target run under
    ``no_grad`` (the attribute set back to True on the instance), and what comes back is made
    of ordinary tensors (usable in autograd and in place)."""
    from scorelab.mcmc import runner

    seen = []
    block = runner._block_eager

    def spy(*args):
        seen.append(torch.is_inference_mode_enabled())
        return block(*args)

    monkeypatch.setattr(runner, "_block_eager", spy)
    target = densities.Banana()
    assert not target.needs_autograd
    kw = dict(chains=4, steps=30, warmup=40, dtype=F64, compile=False, progress=False)
    fast = mcmc.sample(target, kernel, generator=_gen(5), **kw)
    assert seen and all(seen)
    seen.clear()
    plain_target = densities.Banana()
    plain_target.needs_autograd = True
    plain = mcmc.sample(plain_target, kernel, generator=_gen(5), **kw)
    assert seen and not any(seen)
    assert torch.equal(fast.samples, plain.samples)
    assert fast.step_size == plain.step_size
    for value in dataclasses.astuple(fast):
        for t in value.values() if isinstance(value, dict) else [value]:
            if isinstance(t, torch.Tensor):
                assert not t.is_inference()
    fast.samples.requires_grad_(True).sum().backward()  # an ordinary leaf tensor


def test_compiled_mala_gives_the_eager_chains():
    """Same seed, same chains, bit for bit: the compiled block runs the same kernel on the same
    pre-drawn numbers (at a fixed step size: see the HMC test for adapted ones)."""
    kw = dict(chains=8, steps=300, warmup=0, step_size=0.3, dtype=F64, progress=False)
    before = _graphs()
    fast = mcmc.sample(densities.Banana(), "mala", compile=True, generator=_gen(4), **kw)
    assert fast.compiled and _graphs() - before == 1  # one graph: no breaks, no recompiles
    slow = mcmc.sample(densities.Banana(), "mala", compile=False, generator=_gen(4), **kw)
    assert not slow.compiled
    assert torch.equal(fast.samples, slow.samples)


@pytest.mark.slow
def test_compiled_jittered_mala_gives_the_eager_chains_to_rounding():
    """Jittered steps differ per chain, and ATen's vectorized float64 ``sqrt`` (of ``2h`` in
    the proposal) is not correctly rounded on this CPU (50 of 4096 random values differ from
    ``math.sqrt`` by 1 ulp; Inductor's agree with it), so the chains agree to rounding, not
    bit for bit; with every accept/reject decision the same, the gap stays at a few ulps."""
    kw = dict(chains=8, steps=300, warmup=0, step_size=0.3, step_jitter=0.5, dtype=F64)
    fast = mcmc.sample(
        densities.Banana(), "mala", compile=True, generator=_gen(4), progress=False, **kw
    )
    slow = mcmc.sample(
        densities.Banana(), "mala", compile=False, generator=_gen(4), progress=False, **kw
    )
    assert torch.equal(fast.accept_rate, slow.accept_rate)
    torch.testing.assert_close(fast.samples, slow.samples, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["diag", "per-chain"])
def test_compiled_hmc_adapts_mass_without_recompiling(mode):
    """Step sizes and the mass matrix enter the compiled block as tensors: the mass windows and
    per-transition step-size adaptation run through one compiled graph (fullgraph=True would
    raise on a graph break).

    Adapted runs are not compared draw by draw: Inductor's vectorized ``exp`` differs from
    ATen's by up to 1 ulp (the step size is ``exp(log_step)``; with a fixed step the chains
    are bit-identical, as above), and exploratory warm-up steps amplify that until the chains
    decorrelate. Both must be exact for the target instead."""
    target = TARGETS["ill-conditioned-gaussian"]
    kw = dict(chains=8, steps=400, warmup=400, dtype=F64, progress=False, n_leapfrog=5)
    kw["adapt_mass"] = mode
    before = _graphs()
    fast = mcmc.sample(target, "hmc", compile=True, generator=_gen(5), **kw)
    assert _graphs() - before == 1
    slow = mcmc.sample(target, "hmc", compile=False, generator=_gen(5), **kw)
    assert fast.inv_mass.shape == ((8, 2) if mode == "per-chain" else (2,))
    assert not (fast.inv_mass == 1).any()  # it did adapt (every chain)
    assert fast.extra["energy"].shape == (8, 400)
    for res in (fast, slow):
        assert_moments(res.samples, target.mean, target.cov.diagonal(), min_ess=100)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["rwm", "mala", "hmc"])
@pytest.mark.parametrize("name", TARGETS)
def test_compiled_kernels_recover_moments(kernel, name):
    """test_kernels.py's exactness test on the compiled path (same tolerances)."""
    res = run_and_check_moments(kernel, name, compile=True, progress=False)
    assert res.compiled


@pytest.mark.slow
def test_compiled_ula_has_the_known_bias_and_mala_removes_it():
    """ULA at h = 0.5 on N(0, 1): stationary variance 1 / (1 - h/2) = 4/3 (see
    test_kernels.py for the standard error); MALA at the same step: variance 1."""
    h, chains, steps = 0.5, 500, 1000
    v = 1 / (1 - h / 2)
    init = torch.randn(chains, 1, generator=_gen(2), dtype=F64) * math.sqrt(v)
    gauss = densities.Gaussian([0.0], 1.0)
    res = mcmc.sample(
        gauss, "ula", chains=chains, steps=steps, warmup=0, step_size=h, init=init, dtype=F64,
        generator=_gen(3), compile=True, progress=False,
    )  # fmt: skip
    rho = 1 - h
    se = math.sqrt(2 * v**2 * (1 + rho**2) / (1 - rho**2) / (chains * steps))
    assert abs((res.samples**2).mean().item() - v) < 5 * se
    res = mcmc.sample(
        gauss, "mala", chains=200, steps=2000, warmup=200, step_size=0.5, dtype=F64,
        generator=_gen(4), compile=True, progress=False,
    )  # fmt: skip
    assert_moments(res.samples, torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64), 5000)


@pytest.mark.slow
def test_compiled_leapfrog_is_reversible():
    """The leapfrog integrator compiled as one graph: exact time reversal (to rounding). The
    metric is built (and checked) outside the graph, as the runner does."""
    target = densities.Gaussian([0.0, 0.0], 1.0)
    state = mcmc.init(target, torch.tensor([[1.0, -0.5]], dtype=F64))
    p = torch.tensor([[0.3, 0.8]], dtype=F64)
    ones = Metric.from_inv_mass(torch.ones(2, dtype=F64))
    frog = torch.compile(mcmc.leapfrog, fullgraph=True)
    end, p1 = frog(target, state, p, 0.1, ones, 10)
    back, p2 = frog(target, end, -p1, 0.1, ones, 10)
    torch.testing.assert_close(back.x, state.x, rtol=0, atol=1e-12)
    torch.testing.assert_close(-p2, p, rtol=0, atol=1e-12)


def test_a_chain_started_in_the_banana_tail_is_not_stranded():
    """Per-chain step sizes: a chain started at (-6, 30), where the curvature is ~150x the
    bulk's, shrinks its own step in warm-up and walks into the bulk; with one shared step it
    sat there, diverging in every transition (issue 15: 3,991 of 4,000)."""
    init = torch.tensor([[-6.0, 30.0]] + [[0.0, 0.0]] * 7, dtype=F64)
    res = mcmc.sample(
        densities.Banana(), "hmc", chains=8, steps=300, warmup=500, init=init, dtype=F64,
        generator=_gen(6), compile=False, progress=False,
    )  # fmt: skip
    assert res.stuck_chains() == [] and "stuck" not in res.report()
    assert res.accept_rate[0] > 0.5 and res.samples[0, :, 0].abs().mean() < 3


def test_report_names_stuck_chains():
    """A chain that never moves (acceptance 0, no variance) is named in the report."""
    x = torch.randn(4, 100, 2, generator=_gen(7), dtype=F64)
    x[2] = torch.tensor([-29.8, 22.0], dtype=F64)
    res = mcmc.MCMCResult(
        samples=x, accept_rate=torch.tensor([0.6, 0.6, 0.0, 0.6], dtype=F64), step_size=0.3,
        grad_evals=10, divergences=torch.tensor([0, 0, 99, 0]), kernel="hmc", inv_mass=None,
        wall_time=1.0,
    )  # fmt: skip
    assert res.stuck_chains() == [2]
    assert "1 stuck chain(s): 2 (acceptance 0.00, at [-29.8, 22.0])" in res.report()


def test_step_jitter_scales_each_chains_step_by_its_uniform_after_warm_up():
    """h x (1 + j (2u - 1)) per chain from the transition's first pre-drawn number when not
    adapting; the plain step while adapting (the uniform is drawn either way)."""
    seen = []

    def spy(target, state, h, generator, **params):
        seen.append(h.clone())
        return mcmc.mala_step(target, state, h, generator, **params)

    k = dataclasses.replace(get_kernel("mala"), step=spy)
    target = densities.Gaussian([0.0], 1.0)
    state = mcmc.init(target, torch.zeros(4, 1, dtype=F64))
    h = torch.full((4,), 0.2, dtype=F64)
    u = torch.tensor([0.0, 0.25, 0.5, 0.75], dtype=F64)
    noise, mh = torch.zeros(4, 1, dtype=F64), torch.full((4,), 0.5, dtype=F64)
    for adapting, factor in [(False, [0.5, 0.75, 1.0, 1.25]), (True, [1.0] * 4)]:
        src = PreDrawn([u, noise, mh])
        _transition(k, target, {}, state, da_init(h), torch.tensor(adapting), src, None, 0.5)
        expected = da_step_size(da_init(h), torch.tensor(adapting)) * torch.tensor(
            factor, dtype=F64
        )
        torch.testing.assert_close(seen[-1], expected, rtol=1e-15, atol=0)


def test_step_jitter_must_be_in_zero_one():
    with pytest.raises(ValueError, match=r"step_jitter must be a number in \[0, 1\); got 1.0"):
        mcmc.sample(densities.Banana(), "hmc", steps=10, step_jitter=1.0, progress=False)


def test_cli_step_jitter_out_of_range_names_the_flag(tmp_path):
    from scorelab.cli.main import main

    with pytest.raises(SystemExit, match=r"--step-jitter must be a number in \[0, 1\); got 1.5"):
        main(["mcmc", "banana", "--step-jitter", "1.5", "--out", str(tmp_path)])
