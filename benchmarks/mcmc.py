"""MCMC side by side: scorelab against BlackJAX (MALA, HMC, NUTS) and NumPyro (NUTS).

Run from the repository root (the peers are benchmark-only extras, ``pip install jax blackjax
numpyro``; a missing one is skipped with a message)::

    python benchmarks/mcmc.py                 # 1000 warm-up + 4000 draws, 64 chains, 2 repeats,
                                              # chains sweep; writes results/mcmc.md
    python benchmarks/mcmc.py --quick         # 100 + 400, 1 repeat, no sweep; prints only
    python benchmarks/mcmc.py --only banana   # some targets (comma-separated names)
    python benchmarks/mcmc.py --out FILE      # write the report elsewhere
    python benchmarks/mcmc.py --device cuda   # every library on the GPU (Pyro and the
                                              # CPU-only sections left out)

Every library samples the same targets from the same starting points (uniform on [-2, 2]^d)
in float32 with one thread, adapts its own step size, and is scored with the same estimator:
the minimum over coordinates of scorelab's bulk ESS on all draws of all chains. Compile time
(``torch.compile`` of scorelab's block; JAX's lowering and XLA compile) is reported apart and
included in the "ESS/s" column, the number a user who runs one 5000-transition job sees.

A configuration is one entry of ``CONFIGS``: a label, a sampler name, and a function
``(problem, sampler, steps, chains, peers) -> Row``. Adding a kernel adds one line there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from _common import CompileClock, emit, fmt, import_peer, machine, run_meta, versions

import scorelab
from scorelab import densities, mcmc
from scorelab.densities import Density

SEED = 0
# where scorelab's chains (and JAX's arrays) live: "cpu" or "cuda" (--device)
DEVICE = "cpu"
RESULTS = Path(__file__).resolve().parent / "results" / "mcmc.md"
LOG_2PI = math.log(2 * math.pi)
# scorelab's own target acceptance rates, used for the peers too
TARGET_ACCEPT = {"mala": 0.574, "hmc": 0.8, "nuts": 0.8}
N_LEAPFROG = 10
PEERS = ("jax", "blackjax", "numpyro", "pyro")
# cold torch.compile every time, so that "compile s" does not depend on an earlier run's cache
torch._inductor.config.fx_graph_cache = False
torch._functorch.config.enable_autograd_cache = False

Array = Any  # a torch.Tensor or a jax.Array
LogProb = Callable[[Array], Array]


# -- targets: each log-density is written once, for torch and jax.numpy alike ----------------


@dataclass(frozen=True)
class Problem:
    """One target: scorelab's built-in density and the same log-density for jax.numpy."""

    name: str
    title: str
    dim: int
    builtin: Callable[[], Density]
    log_prob: Callable[[ModuleType], LogProb]  # xp -> (x -> log p(x)), for the peers


def gaussian_problem(dim: int = 100, condition: float = 100.0, rotated: bool = False) -> Problem:
    """Variances log-spaced 1..condition; ``rotated``: by a fixed orthogonal matrix (seeded QR)."""
    var = np.logspace(0, math.log10(condition), dim)
    rot = np.eye(dim)
    if rotated:
        q, r = np.linalg.qr(np.random.default_rng(SEED).standard_normal((dim, dim)))
        rot = q * np.sign(np.diag(r))
    const = float(-0.5 * (np.log(var).sum() + dim * LOG_2PI))
    cov = torch.from_numpy((rot * var) @ rot.T) if rotated else torch.from_numpy(var)

    def log_prob(xp: ModuleType) -> LogProb:
        r, inv = xp.asarray(rot, dtype="float32"), xp.asarray(1 / var, dtype="float32")

        def f(x: Array) -> Array:
            z = x @ r if rotated else x
            return -0.5 * (z * z * inv).sum(-1) + const

        return f

    kind = "rotated" if rotated else "diagonal"
    return Problem(
        f"gauss{dim}-{condition:g}{'-rot' if rotated else ''}",
        f"{dim}-D Gaussian, condition number {condition:g} ({kind})",
        dim,
        lambda: densities.Gaussian(torch.zeros(dim, dtype=torch.float64), cov),
        log_prob,
    )


def funnel_problem(dim: int = 10, scale: float = 3.0) -> Problem:
    """Neal's funnel; the neck (v << 0) needs steps far smaller than the mouth."""
    k = dim - 1

    def log_prob(xp: ModuleType) -> LogProb:
        def f(x: Array) -> Array:
            v, rest = x[..., 0], x[..., 1:]
            lp_v = -0.5 * (v / scale) ** 2 - math.log(scale) - 0.5 * LOG_2PI
            return lp_v - 0.5 * (rest * rest).sum(-1) * xp.exp(-v) - 0.5 * k * (v + LOG_2PI)

        return f

    return Problem(
        "funnel",
        f"Neal's funnel, {dim}-D (v ~ N(0, {scale:g}^2), x_i ~ N(0, e^v))",
        dim,
        lambda: densities.Funnel(dim, scale),
        log_prob,
    )


def banana_problem(a: float = 1.0, b: float = 1.0) -> Problem:
    """Haario's twisted Gaussian: curved, with a scale that changes along the curve."""

    def log_prob(xp: ModuleType) -> LogProb:
        def f(x: Array) -> Array:
            x1, x2 = x[..., 0], x[..., 1]
            u = x2 - b * (x1 * x1 - a * a)
            return -0.5 * (x1 * x1 / (a * a) + u * u) - math.log(a) - LOG_2PI

        return f

    return Problem(
        "banana", f"2-D banana (a = {a:g}, b = {b:g})", 2, lambda: densities.Banana(a, b), log_prob
    )


def far_modes_problem(dim: int = 2, distance: float = 8.0) -> Problem:
    """Two unit Gaussians at -/+ distance/2 on the first axis, equal weights: chains that
    start near one mode stay there, so R-hat is what this target is about."""
    m = np.zeros((2, dim))
    m[0, 0], m[1, 0] = -distance / 2, distance / 2

    def log_prob(xp: ModuleType) -> LogProb:
        means = xp.asarray(m, dtype="float32")

        def f(x: Array) -> Array:
            d2 = ((x[..., None, :] - means) ** 2).sum(-1)  # [..., 2]
            a, b = -0.5 * d2[..., 0], -0.5 * d2[..., 1]
            hi = xp.maximum(a, b)
            lse = hi + xp.log(xp.exp(a - hi) + xp.exp(b - hi))
            return lse + math.log(0.5) - 0.5 * dim * LOG_2PI

        return f

    return Problem(
        "far-modes",
        f"two far modes: {dim}-D, unit Gaussians {distance:g} apart",
        dim,
        lambda: densities.GaussianMixture([0.5, 0.5], torch.from_numpy(m), 1.0),
        log_prob,
    )


PROBLEMS = {
    p.name: p
    for p in (
        gaussian_problem(100, 100.0),
        gaussian_problem(100, 1000.0, rotated=True),
        banana_problem(),
        funnel_problem(),
        far_modes_problem(),
    )
}


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One (target, sampler, library) measurement."""

    target: str
    sampler: str
    library: str
    chains: int
    min_ess: float  # min over coordinates of bulk ESS, all chains pooled
    max_rhat: float
    wall: float  # seconds, warm-up + sampling, compile excluded
    compile: float  # seconds (torch.compile of the block; JAX lowering + XLA compile)
    grads: float  # gradient evaluations per chain, warm-up included (mean over chains)
    accept: float
    step_size: float  # the (median over chains) step size used after warm-up
    load: float = field(default_factory=lambda: os.getloadavg()[0])  # 1-min load at the end

    @property
    def total(self) -> float:
        return self.wall + self.compile

    @property
    def ess_per_s(self) -> float:
        """min ESS per second, compile time included."""
        return self.min_ess / self.total

    @property
    def ess_per_run_s(self) -> float:
        """min ESS per second of sampling (compile excluded)."""
        return self.min_ess / self.wall

    @property
    def ess_per_kgrad(self) -> float:
        """min ESS per 1000 gradient evaluations (all chains together)."""
        return 1000 * self.min_ess / max(self.grads * self.chains, 1)


# score_draws converts at most this many values to float64 at once: 16384 chains x 1000 draws
# x 100-D as one float64 copy (13 GB, more inside the FFTs) was OOM-killed on a 23 GB machine
SCORE_CHUNK = 1 << 24


def score_draws(draws: np.ndarray) -> tuple[float, float]:
    """(min bulk ESS, max R-hat) over coordinates of ``[chains, draws, dim]`` draws, computed
    in float64 a few coordinates at a time (the same numbers as all at once: both are per
    coordinate), so memory stays ~``SCORE_CHUNK`` x 8 bytes above the draws themselves."""
    chains, n, dim = draws.shape
    width = max(1, SCORE_CHUNK // (chains * n))
    ess, rhat = math.inf, -math.inf
    for lo in range(0, dim, width):
        x = torch.as_tensor(np.asarray(draws[..., lo : lo + width], dtype=np.float64))
        ess = min(ess, float(mcmc.ess(x, method="bulk").min()))
        rhat = max(rhat, float(mcmc.rhat(x).max()))
    return ess, rhat


def initial_points(dim: int, chains: int, seed: int = SEED) -> np.ndarray:
    """Stan's (and scorelab's) default start, uniform on [-2, 2]^dim, shared by all libraries
    (one set per repeat's ``seed``)."""
    return np.random.default_rng(seed + dim).uniform(-2, 2, (chains, dim)).astype(np.float32)


# -- scorelab ----------------------------------------------------------------------------------


def run_scorelab(
    problem: Problem,
    sampler: str,
    steps: tuple[int, int],
    chains: int,
    peers,
    seed: int = SEED,
    **options,
) -> Row:
    """``scorelab.mcmc.sample`` as a user calls it, plus ``options`` (e.g. ``compile=``)."""
    warmup, draws = steps
    x0 = torch.from_numpy(initial_points(problem.dim, chains, seed)).to(DEVICE)
    options = {"n_leapfrog": N_LEAPFROG} | options if sampler == "hmc" else options
    res = mcmc.sample(
        problem.builtin(), sampler, chains=chains, steps=draws, warmup=warmup, init=x0,
        generator=torch.Generator(DEVICE).manual_seed(seed), progress=False, **options,
    )  # fmt: skip
    ess, rhat = score_draws(res.samples.cpu().numpy())
    return Row(
        problem.name, sampler, "", chains, ess, rhat,
        wall=res.wall_time - res.compile_time, compile=res.compile_time,
        grads=res.total_grad_evals / chains, accept=float(res.accept_rate.mean()),
        step_size=res.step_size,
    )  # fmt: skip


# -- peers -------------------------------------------------------------------------------------

COMPILE_CLOCK = CompileClock()


def blackjax_chain(bj: ModuleType, jax: ModuleType, logp: LogProb, sampler: str, steps):
    """One chain of BlackJAX ``sampler``, warm-up then sampling; vmapped over chains outside.

    HMC and NUTS warm up with ``blackjax.window_adaptation`` (Stan's windows: dual averaging
    and a diagonal mass matrix); MALA has no mass matrix and BlackJAX no MALA warm-up, so its
    step size is tuned by BlackJAX's own dual-averaging primitive, from 1.0 as Stan's windows do.
    """
    jnp = jax.numpy
    warmup, draws = steps

    def run(key, x0):
        k_warm, k_draw = jax.random.split(key)
        if sampler == "mala":
            state, params, warm_grads = mala_warmup(bj, jax, logp, k_warm, x0, warmup)
            kernel = bj.mala(logp, **params)
        else:
            algo = getattr(bj, sampler)
            extra = {"num_integration_steps": N_LEAPFROG} if sampler == "hmc" else {}
            adapt = bj.window_adaptation(
                algo, logp, target_acceptance_rate=TARGET_ACCEPT[sampler],
                adaptation_info_fn=lambda s, info, a: info.num_integration_steps, **extra,
            )  # fmt: skip
            (state, params), n_steps = adapt.run(k_warm, x0, num_steps=warmup)
            kernel, warm_grads = algo(logp, **params), n_steps.sum()

        def step(state, key):
            state, info = kernel.step(key, state)
            grads = getattr(info, "num_integration_steps", 1)
            return state, (state.position, info.acceptance_rate, grads)

        _, (xs, acc, grads) = jax.lax.scan(step, state, jax.random.split(k_draw, draws))
        return xs, acc.mean(), params["step_size"], warm_grads + jnp.sum(grads)

    return run


def mala_warmup(bj: ModuleType, jax: ModuleType, logp: LogProb, key, x0, n: int):
    """Per-chain dual averaging of MALA's step size to acceptance 0.574 (Hoffman & Gelman)."""
    da_init, da_update, da_final = bj.adaptation.step_size.dual_averaging_adaptation(
        TARGET_ACCEPT["mala"]
    )
    kernel = bj.mala.build_kernel()

    def step(carry, key):
        state, da = carry
        state, info = kernel(key, state, logp, jax.numpy.exp(da.log_step_size))
        return (state, da_update(da, info.acceptance_rate)), None

    start = (bj.mala.init(x0, logp), da_init(1.0))
    (state, da), _ = jax.lax.scan(step, start, jax.random.split(key, n))
    return state, {"step_size": da_final(da)}, n


def run_blackjax(
    problem: Problem, sampler: str, steps, chains: int, peers, seed: int = SEED
) -> Row:
    jax, bj = peers["jax"], peers["blackjax"]
    one_chain = blackjax_chain(bj, jax, problem.log_prob(jax.numpy), sampler, steps)
    keys = jax.random.split(jax.random.key(seed), chains)
    x0 = jax.numpy.asarray(initial_points(problem.dim, chains, seed))
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(one_chain)).lower(keys, x0).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    xs, acc, step_size, grads = jax.block_until_ready(compiled(keys, x0))
    wall = time.perf_counter() - start
    ess, rhat = score_draws(np.asarray(xs))
    return Row(
        problem.name, sampler, "", chains, ess, rhat, wall=wall, compile=compile_s,
        grads=float(np.mean(grads)), accept=float(np.mean(acc)),
        step_size=float(np.median(step_size)),
    )  # fmt: skip


def run_numpyro(problem: Problem, sampler: str, steps, chains: int, peers, seed: int = SEED) -> Row:
    """NumPyro NUTS with ``chain_method="vectorized"``: per-chain Stan warm-up, vmapped.

    NumPyro compiles inside ``warmup``/``run``, so its compile time is read from JAX's compile
    events and taken off the wall time.
    """
    jax, infer = peers["jax"], importlib.import_module("numpyro.infer")
    logp = problem.log_prob(jax.numpy)
    warmup, draws = steps
    runner = infer.MCMC(
        infer.NUTS(potential_fn=lambda x: -logp(x), target_accept_prob=TARGET_ACCEPT["nuts"]),
        num_warmup=warmup, num_samples=draws, num_chains=chains, chain_method="vectorized",
        progress_bar=False,
    )  # fmt: skip
    k_warm, k_draw = jax.random.split(jax.random.key(seed))
    COMPILE_CLOCK.listen(jax)
    compiled_before, start = COMPILE_CLOCK.seconds, time.perf_counter()
    x0 = jax.numpy.asarray(initial_points(problem.dim, chains, seed))
    runner.warmup(k_warm, init_params=x0, extra_fields=("num_steps",), collect_warmup=True)
    warm_steps = np.asarray(runner.get_extra_fields(group_by_chain=True)["num_steps"])
    runner.run(k_draw, extra_fields=("num_steps", "accept_prob"))
    xs = jax.block_until_ready(runner.get_samples(group_by_chain=True))
    total = time.perf_counter() - start
    compile_s = COMPILE_CLOCK.seconds - compiled_before
    fields = runner.get_extra_fields(group_by_chain=True)
    grads = warm_steps.sum(1) + np.asarray(fields["num_steps"]).sum(1)
    ess, rhat = score_draws(np.asarray(xs))
    return Row(
        problem.name, sampler, "", chains, ess, rhat, wall=total - compile_s, compile=compile_s,
        grads=float(grads.mean()), accept=float(np.mean(fields["accept_prob"])),
        step_size=float(np.median(runner.last_state.adapt_state.step_size)),
    )  # fmt: skip


PYRO_CHAINS = 4  # Pyro runs chains one after another in eager PyTorch: fewer chains


class _TorchNumpy:
    """``torch`` with numpy's ``asarray(a, dtype="float32")``, so the targets' ``log_prob(xp)``
    (written for ``jax.numpy``) builds a torch function for Pyro."""

    def asarray(self, a, dtype=None):
        return torch.as_tensor(np.asarray(a, dtype=dtype))

    def __getattr__(self, name):
        return getattr(torch, name)


def run_pyro(problem: Problem, sampler: str, steps, chains: int, peers, seed: int = SEED) -> Row:
    """Pyro's NUTS (``pyro.infer.mcmc.NUTS`` on a ``potential_fn``, Stan's windowed warm-up
    with a diagonal mass, target acceptance 0.8, max tree depth 10), ``PYRO_CHAINS`` chains run
    one after another (Pyro has no vectorized chains; ``num_chains > 1`` forks processes, which
    would not be a fair use of 2 shared cores). ESS is scored on those chains; ESS/s and ESS per
    gradient are comparable per chain, not in absolute ESS."""
    pyro_mcmc = importlib.import_module("pyro.infer.mcmc")
    chains = min(chains, PYRO_CHAINS)
    warmup, draws = steps
    logp = problem.log_prob(_TorchNumpy())
    x0 = torch.from_numpy(initial_points(problem.dim, chains, seed))
    xs, sizes, wall, calls = [], [], 0.0, [0]

    def potential(params):
        calls[0] += 1  # Pyro differentiates each potential evaluation: one gradient each
        return -logp(params["x"])

    for c in range(chains):
        torch.manual_seed(seed * 1000 + c)
        kernel = pyro_mcmc.NUTS(potential_fn=potential, target_accept_prob=0.8,
                                max_tree_depth=10, full_mass=False)  # fmt: skip
        run = pyro_mcmc.MCMC(kernel, num_samples=draws, warmup_steps=warmup,
                             initial_params={"x": x0[c]}, disable_progbar=True)  # fmt: skip
        start = time.perf_counter()
        run.run()
        wall += time.perf_counter() - start
        xs.append(run.get_samples()["x"].numpy())
        sizes.append(float(kernel.step_size))
    ess, rhat = score_draws(np.stack(xs))
    return Row(
        problem.name, sampler, "", chains, ess, rhat, wall=wall, compile=0.0,
        grads=calls[0] / chains, accept=math.nan, step_size=float(np.median(sizes)),
    )  # fmt: skip


# -- the table of configurations ----------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One row of every target's table: ``run(problem, sampler, steps, chains, peers, seed,
    **options) -> Row``; ``needs`` names the peer module it requires."""

    library: str
    sampler: str
    run: Callable[..., Row]
    options: dict = field(default_factory=dict)
    needs: str | None = None
    sweep: bool = False  # also run in the chains sweep


CONFIGS: list[Config] = [
    Config("scorelab", "mala", run_scorelab, {"compile": True}, sweep=True),
    Config("scorelab eager", "mala", run_scorelab, {"compile": False}, sweep=True),
    Config("BlackJAX", "mala", run_blackjax, needs="blackjax", sweep=True),
    Config("scorelab", "hmc", run_scorelab, {"compile": True}),
    Config("scorelab eager", "hmc", run_scorelab, {"compile": False}),
    Config(
        "scorelab eager per-chain",
        "hmc",
        run_scorelab,
        {"compile": False, "adapt_mass": "per-chain"},
    ),
    Config("BlackJAX", "hmc", run_blackjax, needs="blackjax"),
    Config("BlackJAX", "nuts", run_blackjax, needs="blackjax"),
    Config("NumPyro", "nuts", run_numpyro, needs="numpyro"),
    Config("scorelab", "nuts", run_scorelab, {"compile": True}),
    Config("scorelab stepwise", "nuts", run_scorelab, {"compile": True, "stepwise": True}),
    Config("Pyro", "nuts", run_pyro, needs="pyro"),
    Config("scorelab", "chees", run_scorelab),
]
SWEEP_TARGETS = ("banana", "gauss100-100")
SWEEP_CHAINS = (64, 1024, 16384)


def load_peers() -> dict[str, ModuleType]:
    peers = {name: import_peer(name) for name in PEERS}
    if peers["jax"] is None:
        peers["blackjax"] = peers["numpyro"] = None
    if peers["jax"] is not None:
        peers["jax"].config.update("jax_platforms", DEVICE)
    return {name: mod for name, mod in peers.items() if mod is not None}


def measure(
    config: Config, problem: Problem, steps, chains: int, peers, seed: int = SEED
) -> Row | None:
    label = f"{problem.name:13s} {config.sampler:5s} {config.library:15s} {chains:6d} chains"
    print(f"  {label} ...", end=" ", flush=True)
    try:
        row = config.run(problem, config.sampler, steps, chains, peers, seed, **config.options)
    except Exception as err:  # one failing run must not lose the others
        print(f"FAILED: {type(err).__name__}: {str(err)[:300]}")
        return None
    row = Row(**{**row.__dict__, "library": config.library})
    print(
        f"ESS {row.min_ess:,.0f}, R-hat {row.max_rhat:.3f}, {row.wall:.2f} s + "
        f"{row.compile:.1f} s compile, {row.ess_per_s:,.0f} ESS/s (load {row.load:.1f})"
    )
    return row


# -- the report --------------------------------------------------------------------------------


def groups(rows: list[Row]) -> dict[tuple, list[Row]]:
    """Repeats of one (target, sampler, library, chains), in order of first appearance."""
    out: dict[tuple, list[Row]] = {}
    for r in rows:
        out.setdefault((r.target, r.sampler, r.library, r.chains), []).append(r)
    return out


def med(rows: list[Row], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in rows)


def spread(rows: list[Row], attr: str) -> str:
    """``median (min-max)`` over repeats, or the one value."""
    vals = [getattr(r, attr) for r in rows]
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}-{fmt(max(vals))})"


TABLE_HEAD = (
    "| sampler | library | min ESS | max R-hat | run s | compile s | grads/chain | accept "
    "| step | ESS/s (incl. compile) | ESS/s (run only) | ESS/1k grads | load |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def table(rows: list[Row]) -> str:
    lines = [TABLE_HEAD]
    for (_, sampler, library, _), rs in groups(rows).items():
        cells = [
            fmt(med(rs, "min_ess")), fmt(max(r.max_rhat for r in rs)), spread(rs, "wall"),
            spread(rs, "compile"), fmt(med(rs, "grads")), fmt(med(rs, "accept")),
            fmt(med(rs, "step_size")), spread(rs, "ess_per_s"), spread(rs, "ess_per_run_s"),
            fmt(med(rs, "ess_per_kgrad")), f"{min(r.load for r in rs):.1f}-"
            f"{max(r.load for r in rs):.1f}",
        ]  # fmt: skip
        lines.append(f"| {sampler.upper()} | {library} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def find(rows: list[Row], target: str, sampler: str, library: str, chains: int) -> list[Row]:
    return groups(rows).get((target, sampler, library, chains), [])


def ratio_table(rows: list[Row], chains: int) -> str:
    """scorelab (compiled) / BlackJAX per target and sampler, medians over repeats."""
    lines = [
        "| target | sampler | ESS/s ratio (incl. compile) | ESS/s ratio (run only) "
        "| ESS/grad ratio | eager scorelab ESS/s ratio |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for target in dict.fromkeys(r.target for r in rows):
        for sampler in ("mala", "hmc"):
            ours, peer = (find(rows, target, sampler, lib, chains) for lib in
                          ("scorelab", "BlackJAX"))  # fmt: skip
            eager = find(rows, target, sampler, "scorelab eager", chains)
            if not ours or not peer:
                continue
            cells = [
                med(ours, a) / med(peer, a) for a in ("ess_per_s", "ess_per_run_s", "ess_per_kgrad")
            ]
            cells.append(med(eager, "ess_per_s") / med(peer, "ess_per_s") if eager else math.nan)
            lines.append(f"| {target} | {sampler.upper()} | " + " | ".join(map(fmt, cells)) + " |")
    return "\n".join(lines)


def sweep_table(rows: list[Row]) -> str:
    lines = [
        "| target | sampler | chains | scorelab ESS/s (incl. compile) | run only | scorelab "
        "eager ESS/s | BlackJAX ESS/s (incl. compile) | run only | ratio (incl.) | ratio (run) "
        "| eager ratio (incl.) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target in dict.fromkeys(r.target for r in rows):
        for sampler in dict.fromkeys(r.sampler for r in rows):
            for chains in SWEEP_CHAINS:
                ours = find(rows, target, sampler, "scorelab", chains)
                eager = find(rows, target, sampler, "scorelab eager", chains)
                peer = find(rows, target, sampler, "BlackJAX", chains)
                if not ours or not peer:
                    continue
                a, b = med(ours, "ess_per_s"), med(peer, "ess_per_s")
                c, d = med(ours, "ess_per_run_s"), med(peer, "ess_per_run_s")
                e = med(eager, "ess_per_s") if eager else math.nan
                cells = [spread(ours, "ess_per_s"), fmt(c), fmt(e), spread(peer, "ess_per_s")]
                cells += [fmt(d), fmt(a / b), fmt(c / d), fmt(e / b)]
                lines.append(
                    f"| {target} | {sampler.upper()} | {chains} | " + " | ".join(cells) + " |"
                )
    return "\n".join(lines)


METHOD = """\
- **Chains and steps.** {chains} chains, {warmup} warm-up + {draws} sampling iterations for every
  sampler and library, float32, {where}, the same
  starting points (uniform on [-2, 2]^d, Stan's default). Each configuration ran {repeats}
  time(s), repeat r from seed r (the sampler's random numbers and the starting points, for
  every library), so the spread covers the ESS's variation between runs as well as the
  timing's; cells show the median and, in parentheses, the range over the repeats.
- **Configurations** (`CONFIGS` in the script). "scorelab": `mcmc.sample(..., compile=True)`:
  blocks of 50 transitions, each one `torch.compile`-d `scan` of the kernel's own step function,
  per-chain dual averaging of the step size inside the block, HMC's diagonal mass in Stan's
  windows between blocks. "scorelab eager": the same blocks run eagerly (`compile=False`).
  "scorelab eager per-chain" (HMC): eager, each chain adapting its own diagonal mass
  (`adapt_mass="per-chain"`, as BlackJAX). "scorelab stepwise" (NUTS): the compiled blocks
  run chain by chain, each chain's transitions back to back (`stepwise=True`; the same
  chains as "scorelab").
  BlackJAX: HMC and NUTS warm up with `blackjax.window_adaptation` (per-chain Stan windows,
  diagonal mass), vmapped over chains; MALA tunes each chain's step size with BlackJAX's
  `dual_averaging_adaptation`; the whole warm-up + sampling function is jitted and compiled
  ahead of time. NumPyro: `NUTS` with `chain_method="vectorized"`. Target acceptance: MALA
  0.574, HMC and NUTS 0.8; HMC takes {leapfrog} leapfrog steps.
- **ESS.** `scorelab.mcmc.ess(draws, method="bulk")` on all draws of all chains, float64, the
  minimum over coordinates, for every library; R-hat is `scorelab.mcmc.rhat`, the maximum.
- **Time.** "run s": warm-up and sampling without compilation (scorelab: `wall_time -
  compile_time`; BlackJAX: one call of the compiled function; NumPyro: elapsed time minus
  JAX's compile events). "compile s": `MCMCResult.compile_time` (the first block call, cold:
  Inductor's caches are off), JAX's `lower().compile()`, or NumPyro's compile events.
  "ESS/s (incl. compile)" divides by their sum: what one run costs a user.
- **Gradient evaluations** per chain include warm-up (and scorelab's step-size search); for
  NUTS the mean over chains of the leapfrog steps taken. "ESS/1k grads" is min ESS per 1000
  gradient evaluations of all chains together.
- **Load.** The 1-minute load average when each row finished (2 cores shared with other
  work: rows measured under load are slower; compare rows of similar load)."""


WHERE = {
    "cpu": "one thread (`torch.set_num_threads(1)`; JAX on CPU)",
    "cuda": 'on the GPU (scorelab: `device="cuda"`, its random numbers drawn there by a CUDA '
    "generator; JAX on its CUDA backend; one CPU thread for the host side)",
}


def targets(rows: list[Row], sweep_rows: list[Row]) -> str:
    """Issue 15's speed targets, each with the measured median and MET / MISSED."""
    out = []

    def check(name: str, ratio: float, goal: float) -> None:
        if math.isfinite(ratio):
            verdict = "MET" if ratio >= goal else "MISSED"
            out.append(f"- {name}: {ratio:.2f}x (goal >= {goal:g}x): {verdict}")

    for target in dict.fromkeys(r.target for r in rows):
        goal = 2.0 if target in ("banana", "funnel") else 1.0
        for sampler in ("mala", "hmc"):
            peer = find(rows, target, sampler, "BlackJAX", 64)
            if not peer:
                continue
            for lib in ("scorelab", "scorelab eager", "scorelab eager per-chain"):
                ours = find(rows, target, sampler, lib, 64)
                if not ours:
                    continue
                for attr, what in (("ess_per_s", "incl. compile"), ("ess_per_run_s", "run only")):
                    ratio = med(ours, attr) / med(peer, attr)
                    check(f"{target} {sampler.upper()} {lib}, ESS/s {what}", ratio, goal)
    compiles = [r.compile for r in rows if r.library == "scorelab" and r.compile > 0]
    if compiles:
        worst = max(compiles)
        verdict = "MET" if worst < 10 else "MISSED"
        out.append(
            f"- compile time of a block: median {statistics.median(compiles):.1f} s, "
            f"max {worst:.1f} s (goal < 10 s): {verdict}"
        )
    for sampler in dict.fromkeys(r.sampler for r in sweep_rows):
        peer = find(sweep_rows, "banana", sampler, "BlackJAX", SWEEP_CHAINS[-1])
        for lib in ("scorelab", "scorelab eager"):
            ours = find(sweep_rows, "banana", sampler, lib, SWEEP_CHAINS[-1])
            if not (ours and peer):
                continue
            for attr, what in (("ess_per_s", "incl. compile"), ("ess_per_run_s", "run only")):
                if lib == "scorelab eager" and attr == "ess_per_run_s":
                    continue  # no compile: the same number
                ratio = med(ours, attr) / med(peer, attr)
                name = f"banana {sampler.upper()} {lib} at {SWEEP_CHAINS[-1]} chains, {what}"
                check(name, ratio, 2.0)
    return "\n".join(out) or "not measured"


def report(
    rows,
    sweep_rows,
    peers,
    steps,
    meta,
    repeats,
    uptimes,
    study="",
    study_repeats=1,
    pending="",
    note="",
    floor="",
) -> str:
    sections = [
        f"# MCMC benchmark: scorelab vs BlackJAX and NumPyro on {DEVICE.upper()}",
        "",
        f"Generated by `python benchmarks/mcmc.py{meta['args']}` on {meta['date']} "
        f"({meta['minutes']:.1f} min in all).",
        "",
        *(
            [f"**Partial report**: written while the run went on to {pending}.", ""]
            if pending
            else []
        ),
        *([f"**Note.** {note}", ""] if note else []),
        f"- Machine: {machine()}; `uptime` at the start: `{uptimes[0]}`; at the end: "
        f"`{uptimes[-1]}`.",
        f"- Versions: {versions(peers, PEERS)}; "
        f"scorelab {scorelab.__version__} from `{Path(scorelab.__file__).parent}`.",
        "",
        "## How it was measured",
        "",
        METHOD.format(
            chains=64,
            warmup=steps[0],
            draws=steps[1],
            leapfrog=N_LEAPFROG,
            repeats=repeats,
            where=WHERE[DEVICE],
        ),
        "",
        "## scorelab / BlackJAX at 64 chains",
        "",
        "Ratios above 1 favour scorelab (medians over repeats).",
        "",
        ratio_table(rows, 64),
        "",
        "## Issue 15's targets",
        "",
        targets(rows, sweep_rows),
        "",
        "## Results at 64 chains",
    ]
    for name in dict.fromkeys(r.target for r in rows):
        sections += [
            "",
            f"### {PROBLEMS[name].title}",
            "",
            table([r for r in rows if r.target == name]),
        ]
    if sweep_rows:
        sections += [
            "",
            "## Chains sweep",
            "",
            f"MALA, {SWEEP_STEPS[0]} warm-up + {SWEEP_STEPS[1]} draws per chain, one run per "
            "cell (no repeats); ESS/s against the number of chains (BlackJAX vmapped over "
            'chains). "scorelab" is compiled (`compile=True`); "scorelab eager" is '
            '`compile=False`, what `compile="auto"` runs at these lengths.',
            "",
            sweep_table(sweep_rows),
        ]
    if floor:
        sections += [
            "",
            "## The eager floor",
            "",
            "What one ATen call costs here (first table: one thread, inference mode, "
            "[64, 2] float32, the best of 7 timings of 20,000 calls less an empty function's), "
            "and what the eager "
            "rows above are made of (second table; calls counted by a dispatch mode over 200 "
            'transitions after warm-up, block overhead included). "Run s at the cheapest '
            'call" is the calls of a whole run at the cost of `a * b`, the cheapest call '
            'there is; "best ESS/s ratio at these calls" divides BlackJAX\'s total time (its '
            "compile included) by that, times the ESS ratio of the medians: no eager run with "
            'this many calls can do better. "Calls for 2x" is how few calls a transition '
            "must make to reach 2x BlackJAX at equal ESS, were every call the cheapest.",
            "",
            floor,
        ]
    if study:
        sections += [
            "",
            "## Compile time and cost per transition",
            "",
            f"Banana, {STUDY_CHAINS} chains, {STUDY_STEPS} transitions at a fixed step size, "
            "`compile=True`; each configuration in a fresh process (as a user's script), "
            f"{study_repeats} time(s), each with a fresh Inductor cache folder "
            "(`TORCHINDUCTOR_CACHE_DIR`). \"Caches on\" is torch's default (Inductor's FX graph "
            "cache and AOT autograd cache, here in that fresh folder): the first run fills it, "
            "a rerun of the same script compiles from it. The other rows turn both caches off, "
            "so the kernel's graph compiles from scratch; but a fresh folder also makes Inductor "
            'set itself up there (what "torch alone" measures: a one-line function\'s first '
            'compile), which a machine pays once for all later scripts. "Cache folder primed"'
            " rows first run that one-line compile in another process on the same folder: what "
            "a user's script pays on a machine where torch has compiled anything before.",
            "",
            study,
        ]
    return "\n".join(sections) + "\n"


SWEEP_STEPS = (300, 300)  # 16384 chains x 100-D x 1000 draws did not fit in 23 GB


# -- compile time and per-transition cost: Inductor options, cold and warm caches --------------

# (label, options): each runs in a fresh process (a cold start, as a user's script); "cache":
# Inductor's FX graph and AOT autograd caches on (torch's default), in a fresh folder, the
# same process run twice: the first run fills it, the second is a user's rerun
STUDY = [
    ("MALA, default (Python wrapper), caches off", {"kernel": "mala"}),
    ("MALA, caches on: first run / rerun", {"kernel": "mala", "cache": True}),
    ("MALA, C++ wrapper (`cpp_wrapper=True`), caches off", {"kernel": "mala", "cpp_wrapper": True}),
    ("MALA, blocks of 100, caches off", {"kernel": "mala", "block": 100}),
    ("HMC, default, caches off", {"kernel": "hmc"}),
    ("HMC, caches on: first run / rerun", {"kernel": "hmc", "cache": True}),
    ("torch alone: `torch.compile(lambda x: x.sin() + 1)`, caches off", {"kernel": "trivial"}),
    ("torch alone, caches off, cache folder primed", {"kernel": "trivial", "prime": True}),
    ("MALA, caches off, cache folder primed", {"kernel": "mala", "prime": True}),
    ("HMC, caches off, cache folder primed", {"kernel": "hmc", "prime": True}),
]
STUDY_STEPS, STUDY_CHAINS = 5000, 64


def study_child(options: dict) -> None:
    """One study measurement (in a fresh process): banana, 64 chains, 5000 transitions at a
    fixed step, compiled; prints compile seconds and microseconds per transition as JSON."""
    torch._inductor.config.fx_graph_cache = bool(options.get("cache"))
    torch._functorch.config.enable_autograd_cache = bool(options.get("cache"))
    torch._inductor.config.cpp_wrapper = bool(options.get("cpp_wrapper"))
    kernel = options["kernel"]
    if kernel == "trivial":  # torch's own cost of a first compile, whatever is compiled
        t0 = time.perf_counter()
        torch.compile(lambda x: x.sin() + 1)(torch.randn(STUDY_CHAINS, 2))
        print(json.dumps({"compile": time.perf_counter() - t0, "us": math.nan}))
        return
    res = mcmc.sample(
        densities.Banana(), kernel, chains=STUDY_CHAINS, steps=STUDY_STEPS, warmup=0,
        step_size={"mala": 0.3, "hmc": 0.1}[kernel], compile=True, progress=False,
        block_size=options.get("block", mcmc.runner.BLOCK),
        generator=torch.Generator().manual_seed(SEED),
    )  # fmt: skip
    run = res.wall_time - res.compile_time
    print(json.dumps({"compile": res.compile_time, "us": 1e6 * run / STUDY_STEPS}))


def compile_study(repeats: int) -> str:
    """The STUDY table: median (range) over ``repeats`` fresh processes per option."""

    def child(options: dict, env: dict) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, "--study-child", json.dumps(options)],
            capture_output=True, text=True, env=os.environ | env, check=True,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1]) | {"load": os.getloadavg()[0]}

    lines = [
        "| configuration | compile s | µs per transition (run only) | load |",
        "|---|---:|---:|---:|",
    ]
    for label, options in STUDY:
        print(f"  study: {label} ...", flush=True)
        got: list[list[dict]] = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as cache:
                env = {"TORCHINDUCTOR_CACHE_DIR": cache}
                if options.get("prime"):  # Inductor's one-time set-up of the folder
                    child({"kernel": "trivial"}, env)
                runs = 2 if options.get("cache") else 1
                got.append([child(options, env) for _ in range(runs)])
        for i in range(len(got[0])):
            rows = [g[i] for g in got]

            def cell(key: str, rows: list[dict] = rows) -> str:
                v = sorted(r[key] for r in rows)
                mid = statistics.median(v)
                return fmt(mid) + (f" ({fmt(v[0])}-{fmt(v[-1])})" if len(v) > 1 else "")

            name = (
                label
                if len(got[0]) == 1
                else label.replace(
                    "first run / rerun", ("first run (fills the cache)", "rerun (warm cache)")[i]
                )
            )
            loads = sorted(r["load"] for r in rows)
            lines.append(
                f"| {name} | {cell('compile')} | {cell('us')} | {loads[0]:.1f}-{loads[-1]:.1f} |"
            )
    return "\n".join(lines)


# -- the eager floor: what an eager transition's ATen calls cost ------------------------------

# one call each on [chains, 2] float32 (a [chains] mask), in inference mode as eager blocks of
# closed-form targets run; a Python number is wrapped in a fresh tensor first (_utils.scalars)
CALLS: dict[str, Callable[..., Any]] = {
    "`a * b`": lambda a, b, c, m: a * b,
    "`a * 0.5` (a Python number)": lambda a, b, c, m: a * 0.5,
    "`a * c` (a 0-dim tensor)": lambda a, b, c, m: a * c,
    "`a.sum(-1)`": lambda a, b, c, m: a.sum(-1),
    "`torch.stack([a[:, 0], a[:, 1]], -1)` (3 calls)": lambda a, b, c, m: torch.stack(
        [a[:, 0], a[:, 1]], -1
    ),
    "`torch.where(m[:, None], a, b)` (2 calls)": lambda a, b, c, m: torch.where(m[:, None], a, b),
}


def call_costs(chains: int, repeats: int = 7, number: int = 20_000) -> dict[str, float]:
    """Microseconds per evaluation of each ``CALLS`` entry: the best of ``repeats`` timings of
    ``number`` evaluations (the best, as a floor: slower timings are the machine's noise), less
    the same timing of an empty function called the same way (the harness's own cost)."""
    import timeit

    gen = torch.Generator().manual_seed(SEED)
    a, b = torch.randn(2, chains, 2, generator=gen)
    c, m = torch.tensor(0.5), torch.rand(chains, generator=gen) < 0.5

    def best(fn: Callable[..., Any]) -> float:
        return min(timeit.repeat(lambda: fn(a, b, c, m), number=number, repeat=repeats))

    with torch.inference_mode():
        empty = best(lambda a, b, c, m: None)
        return {name: 1e6 * (best(fn) - empty) / number for name, fn in CALLS.items()}


def calls_per_transition(problem: Problem, sampler: str, chains: int) -> float:
    """ATen calls of one eager transition after warm-up, block overhead included: two runs
    that differ only in their number of draws (100 warm-up, then 100 or 300 draws), counted
    by a dispatch mode, the difference divided by the 200 extra transitions."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    counts = []
    for draws in (100, 300):
        options = {"n_leapfrog": N_LEAPFROG} if sampler == "hmc" else {}
        with Count() as count:
            mcmc.sample(
                problem.builtin(), sampler, chains=chains, steps=draws, warmup=100,
                compile=False, progress=False, generator=torch.Generator().manual_seed(SEED),
                **options,
            )  # fmt: skip
        counts.append(count.n)
    return (counts[1] - counts[0]) / 200


def floor_table(rows: list[Row], steps: tuple[int, int], chains: int) -> str:
    """Per eager (target, sampler): calls per transition, what they cost in the run, and the
    bound they set against BlackJAX's total time (at the cheapest call, equal ESS)."""
    costs = call_costs(chains)
    cheapest = costs["`a * b`"]
    lines = [
        "| call | µs |",
        "|---|---:|",
        *(f"| {name} | {fmt(us)} |" for name, us in costs.items()),
        "",
        "| target | sampler | ATen calls / transition | µs / transition (run) | µs / call "
        "| run s at the cheapest call | BlackJAX s (incl. compile) | best ESS/s ratio "
        "at these calls | calls for 2x |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    transitions = sum(steps)
    for (target, sampler, library, n), group in groups(rows).items():
        peer = find(rows, target, sampler, "BlackJAX", n)
        if library != "scorelab eager" or n != chains or not peer:
            continue
        calls = calls_per_transition(PROBLEMS[target], sampler, chains)
        us = 1e6 * med(group, "wall") / transitions
        floor_s = calls * transitions * cheapest * 1e-6
        peer_s = med(peer, "total")
        ess = med(group, "min_ess") / med(peer, "min_ess")
        need = peer_s / 2 / (transitions * cheapest * 1e-6)
        lines.append(
            f"| {target} | {sampler.upper()} | {calls:.0f} | {fmt(us)} | {fmt(us / calls)} "
            f"| {fmt(floor_s)} | {fmt(peer_s)} | {fmt(ess * peer_s / floor_s)} | {need:.0f} |"
        )
    return "\n".join(lines)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 + 400 steps, print only")
    parser.add_argument("--repeat", type=int, default=None, help="repeats (default 2; quick 1)")
    parser.add_argument("--only", default="", help="comma-separated target names")
    parser.add_argument("--samplers", default="", help="comma-separated sampler names")
    parser.add_argument("--no-sweep", action="store_true", help="skip the chains sweep")
    parser.add_argument("--no-main", action="store_true", help="skip the runs at --chains "
                        "(the sweep and the study only)")  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where every library runs (default cpu)")  # fmt: skip
    parser.add_argument("--steps", default="", help="WARMUP,DRAWS (default 1000,4000)")
    parser.add_argument("--chains", type=int, default=64, help="chains (default 64)")
    parser.add_argument("--skip", default="", help="comma-separated libraries to leave out "
                        "(e.g. Pyro,BlackJAX)")  # fmt: skip
    parser.add_argument("--out", type=Path, help=f"report file (default: {RESULTS} unless --quick)")
    parser.add_argument("--no-study", action="store_true", help="skip the compile-time study")
    parser.add_argument(
        "--study-repeat", type=int, default=None, help="study repeats (default: --repeat)"
    )
    parser.add_argument("--note", default="", help="a line for the report's header (why a run "
                        "was shrunk, ...)")  # fmt: skip
    parser.add_argument("--floor", action="store_true", help="add the eager floor section "
                        "(ATen calls per eager transition and what a call costs)")  # fmt: skip
    parser.add_argument("--study-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU on this machine; use --device cpu")
    if DEVICE == "cuda" and (args.floor or not args.no_study):
        print("--device cuda: the compile study and the eager floor measure the CPU; left out")
        args.floor, args.no_study = False, True
    if args.study_child:
        return study_child(json.loads(args.study_child))
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    steps = (100, 400) if args.quick else (1000, 4000)
    if args.steps:
        steps = tuple(int(v) for v in args.steps.split(","))
    repeats = args.repeat or (1 if args.quick else 2)
    out = args.out or (None if args.quick else RESULTS)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    uptimes = [uptime()]
    peers = load_peers()
    names = [n for n in args.only.split(",") if n] or list(PROBLEMS)
    samplers = [s for s in args.samplers.split(",") if s]
    skip = [s for s in args.skip.split(",") if s]
    if DEVICE == "cuda":  # Pyro runs its chains one after another: not a GPU workload
        skip.append("Pyro")
    configs = [
        c for c in CONFIGS
        if (c.needs is None or c.needs in peers) and (not samplers or c.sampler in samplers)
        and c.library not in skip
    ]  # fmt: skip
    rows: list[Row] = []
    sweep_rows: list[Row] = []
    study, study_repeats = "", args.study_repeat or repeats
    # the command as run, with the note (printed in full below it) shortened
    cmd = "".join(f" {a}" if a != args.note else ' "..."' for a in sys.argv[1:])

    def write(pending: str = "") -> None:
        """The report so far (rewritten after each stage, so a killed run leaves its rows)."""
        meta = run_meta(args.quick, start, load_start, args=cmd)
        text = report(rows, sweep_rows, peers, steps, meta, repeats, [*uptimes, uptime()],
                      study, study_repeats, pending, args.note)  # fmt: skip
        if out is not None:
            emit(text, out)

    sweep = not (args.quick or args.no_sweep)
    do_study = not (args.quick or args.no_study)
    later = " and ".join(
        n for n, on in (("the chains sweep", sweep), ("the compile study", do_study)) if on
    )
    for rep in range(0 if args.no_main else repeats):
        print(f"repeat {rep + 1} of {repeats}: {uptime()}")
        for name in names:
            for c in configs:
                row = measure(c, PROBLEMS[name], steps, args.chains, peers, SEED + rep)
                rows += [row] if row else []
                write(f"the end of repeat {rep + 1}" + (f", then {later}" if later else ""))
    write(later)
    if sweep:
        print(f"chains sweep: {uptime()}")
        for name in [n for n in SWEEP_TARGETS if n in names]:
            for chains in SWEEP_CHAINS:
                for c in [c for c in configs if c.sweep]:
                    row = measure(c, PROBLEMS[name], SWEEP_STEPS, chains, peers)
                    sweep_rows += [row] if row else []
                    write("the end of the sweep" + (", then the compile study" if do_study else ""))
        write("the compile study" if do_study else "")
    if do_study:
        print(f"compile study: {uptime()}")
        study = compile_study(study_repeats)
    floor = floor_table(rows, steps, args.chains) if args.floor else ""
    uptimes.append(uptime())
    meta = run_meta(args.quick, start, load_start, args=cmd)
    text = report(rows, sweep_rows, peers, steps, meta, repeats, uptimes, study, study_repeats,
                  note=args.note, floor=floor)  # fmt: skip
    emit(text, out)


if __name__ == "__main__":
    main()
