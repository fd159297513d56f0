"""The MCMC runner: many chains, warm-up adaptation, sampling, divergence checks, diagnostics.

Execution (see docs/design.md, "MCMC engine"): a kernel is one pure step function; the runner
executes it in *blocks* of ``block_size`` transitions. A block's random numbers are drawn up
front from the user's generator, in the order and shapes a dry run of the kernel recorded, and
handed to the kernel through a generator stand-in (``scorelab._utils.PreDrawn``). The block
carries the chains' state and the per-chain dual-averaging state; a per-transition flag says
whether the step size still adapts, so warm-up and sampling share one graph. With
``compile=True`` a block is one ``torch.compile``-d call (``torch``'s ``scan`` over the same
step function, no graph breaks); with ``compile=False`` the same block code runs eagerly, so a
seed gives the same chains either way: bit for bit when all chains share one fixed step size,
to rounding otherwise (ATen's vectorized float64 ``sqrt``, ``exp`` and Inductor's differ in the
last bit for some inputs). The mass matrix is re-estimated between blocks and
enters as a tensor (no recompilation). Kernels that are not ``compilable`` (ChEES), warm-ups
with a kernel ``adapter`` and ``step_schedule`` runs go one transition at a time instead.
"""

from __future__ import annotations

import dataclasses
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from scorelab._utils import DrawRecorder, PreDrawn, check_finite, rand, randn
from scorelab.densities.base import Density, from_log_prob
from scorelab.errors import DivergenceError
from scorelab.mcmc import diagnostics
from scorelab.mcmc.adaptation import (
    DAState,
    MassAdaptation,
    da_init,
    da_step_size,
)
from scorelab.mcmc.blocks import after_step, block_stepwise, jittered
from scorelab.mcmc.kernels import KERNELS, Info, Kernel, State, get_kernel, init
from scorelab.mcmc.metric import Metric
from scorelab.progress import progress as progress_counter

# Transitions per block. The compiled block's cost per transition falls with its length until
# the per-call overhead (drawing the block's random numbers, recording draws) is amortized;
# 50 keeps Stan's mass windows (multiples of 25) nearly unchanged when aligned to blocks.
BLOCK = 50
# compile="auto" compiles runs of at least this many gradient evaluations per chain
# ((warm-up + steps) x n_leapfrog for HMC, x 1 for the others): a block compiles in 10-30 s on
# a busy 2-core CPU and then saves 0.1-0.2 ms per gradient (MALA, HMC; banana and 100-D
# Gaussian, 64 chains: break-even 50k-240k, docs/design.md), so shorter runs finish sooner
# eagerly. A count, not a timing, so the choice (and the chains) never depends on load.
AUTO_COMPILE_WORK = 100_000
# NUTS's trees are not known up front: "auto" runs its first block eagerly and compiles the
# rest when the leaf iterations they would take at the first block's rate (each transition
# as long as its longest tree: chains run in lock step) reach this. Measured on a quiet 2-core
# CPU (100-D Gaussians, 64 chains): eager 0.6-0.8 ms a leaf iteration, compiled 0.10-0.13 ms,
# a NUTS block compiles in 12-23 s: break-even about 20k-35k iterations (docs/design.md).
NUTS_AUTO_COMPILE_LEAVES = 30_000
# Inductor's per-call checks of every input's sizes, strides, alignment and scalar ranges run
# in Python inside the compiled loop, once per transition (scan) or leaf (NUTS's while_loop):
# about 25 checks of ~0.5 us against a fused kernel of a few us on small targets. The block's
# inputs are made by the runner itself, so the checks cannot fail: off (measured: 2-D banana,
# MALA, 64 chains, 32-49 -> 21-22 us a transition).
INDUCTOR_OPTIONS = {
    "size_asserts": False,
    "alignment_asserts": False,
    "scalar_asserts": False,
}
# A chain whose acceptance after warm-up is below this, or whose draws vary less than this
# fraction of the median chain's variance, is reported as stuck.
STUCK_ACCEPT, STUCK_VARIANCE = 0.05, 0.01


@dataclass(frozen=True)
class MCMCResult:
    """Draws and what it took to get them."""

    samples: Tensor  # [chains, draws, dim], after warm-up (and thinning)
    accept_rate: Tensor  # [chains] fraction of accepted proposals after warm-up
    step_size: float  # median over chains of the step sizes used after warm-up
    grad_evals: int  # score evaluations per chain (mean over chains), warm-up and search included
    divergences: Tensor  # [chains] divergent transitions after warm-up
    kernel: str
    inv_mass: Tensor | None  # the inverse mass used after warm-up: [dim] or [dim, dim], [chains,
    #                          dim] with adapt_mass="per-chain"; None for non-Hamiltonian kernels
    wall_time: float  # seconds, warm-up and compilation included
    step_sizes: Tensor | None = None  # [chains] the step size of each chain after warm-up
    total_grad_evals: int = 0  # score evaluations summed over all chains
    extra: dict[str, Tensor] = field(default_factory=dict)  # kernel's Info.extra [chains, draws]
    compile_time: float = 0.0  # seconds of wall_time spent compiling the block (0: eager)
    compiled: bool = False  # whether blocks ran compiled
    max_tree_depth: int | None = None  # NUTS: the depth limit the trees ran under

    def summary(self, names: list[str] | None = None) -> diagnostics.Summary:
        """Mean, sd, quantiles, MCSE, bulk/tail ESS and R-hat per coordinate."""
        return diagnostics.summary(self.samples, names=names)

    def stuck_chains(self) -> list[int]:
        """Chains that did not move after warm-up: acceptance below ``STUCK_ACCEPT`` or draws
        whose variance (mean over coordinates, relative to the median chain's) is below
        ``STUCK_VARIANCE``."""
        chains = self.samples.shape[0]
        if chains < 2 or self.samples.shape[1] < 2:
            return []
        var = self.samples.double().var(1)  # [chains, dim]
        rel = (var / var.median(0).values.clamp_min(1e-300)).mean(-1)
        bad = rel < STUCK_VARIANCE
        if KERNELS.get(self.kernel) is None or KERNELS[self.kernel].adjusted:
            bad |= self.accept_rate < STUCK_ACCEPT
        return bad.nonzero()[:, 0].tolist()

    def ebfmi(self) -> Tensor | None:
        """E-BFMI per chain (``diagnostics.bfmi``) from the kernel's ``energy``; ``None`` for
        kernels that record no energy (non-Hamiltonian)."""
        e = self.extra.get("energy")
        return diagnostics.bfmi(e) if e is not None and e.shape[1] >= 3 else None

    def tree_depth_histogram(self) -> dict[int, int]:
        """NUTS: how many transitions (all chains) ended at each tree depth; ``{}`` otherwise."""
        depth = self.extra.get("tree_depth")
        if depth is None:
            return {}
        values, counts = depth.flatten().unique(return_counts=True)
        return dict(zip(values.tolist(), counts.tolist(), strict=True))

    def max_depth_hits(self) -> int:
        """NUTS: transitions whose tree stopped at ``max_tree_depth`` instead of a U-turn."""
        depth = self.extra.get("tree_depth")
        if depth is None or self.max_tree_depth is None:
            return 0
        return int((depth >= self.max_tree_depth).sum())

    def divergent_draws(self) -> tuple[Tensor, Tensor]:
        """Where the divergences happened: ``(chain, draw)`` indices ``[n, 2]`` and the draws'
        positions ``[n, dim]`` (empty if the kernel records no per-draw flags). In a funnel
        they pile up in the neck."""
        flags = self.extra.get("diverged")
        if flags is None:
            flags = torch.zeros(self.samples.shape[:2], dtype=torch.bool)
        where = flags.bool().nonzero()
        return where, self.samples[where[:, 0], where[:, 1]]

    def verdict(self) -> list[diagnostics.Check]:
        """PASS/FAIL by the usual rules (``diagnostics.verdict``): R-hat < 1.01, bulk and tail
        ESS > 400, and for Hamiltonian kernels no divergences and every E-BFMI > 0.3."""
        k = KERNELS.get(self.kernel)
        hamiltonian = k is not None and k.hamiltonian
        energy = self.extra.get("energy") if hamiltonian else None
        div = int(self.divergences.sum()) if hamiltonian else None
        return diagnostics.verdict(self.samples, div, energy)

    def diagnostics_report(self) -> str:
        """Lines on the trees (depth histogram, max-depth hits), divergences (chains, where),
        E-BFMI per chain, and the verdict."""
        lines = []
        hist = self.tree_depth_histogram()
        if hist:
            shown = ", ".join(f"{d}: {n}" for d, n in sorted(hist.items()))
            lines.append(f"tree depth (transitions): {shown}")
            hits = self.max_depth_hits()
            if hits:
                total = sum(hist.values())
                lines.append(
                    f"WARNING: {hits} of {total} transitions hit max_tree_depth "
                    f"{self.max_tree_depth}: the trajectories were cut short; raise "
                    "max_tree_depth or adapt a (dense) mass matrix"
                )
        where, pos = self.divergent_draws()
        if len(where):
            shown = "; ".join(
                f"chain {c} draw {d} at {[round(v, 3) for v in p[:4].tolist()]}"
                for (c, d), p in zip(where[:3].tolist(), pos[:3], strict=True)
            )
            lines.append(f"divergent draws: {shown}" + (" ..." if len(where) > 3 else ""))
        e = self.ebfmi()
        if e is not None:
            lines.append(f"E-BFMI per chain: min {e.min():.3f}, median {e.median():.3f}")
            low = (e < diagnostics.BFMI_MIN).nonzero()[:, 0].tolist()
            if low:
                lines.append(
                    f"WARNING: E-BFMI below {diagnostics.BFMI_MIN} in {len(low)} chain(s) "
                    f"({', '.join(map(str, low[:10]))}): momentum resampling explores the "
                    "energy poorly (heavy tails?); reparameterize or use a better mass matrix"
                )
        checks = self.verdict()
        overall = "PASS" if all(c.passed for c in checks) else "FAIL"
        lines.append(f"verdict: {overall}: " + "; ".join(map(str, checks)))
        return "\n".join(lines)

    def report(self, names: list[str] | None = None) -> str:
        """A header line (kernel, step size, acceptance, divergences, stuck chains) and the
        summary table."""
        chains, draws, _ = self.samples.shape
        div = int(self.divergences.sum())
        sizes = ""
        if self.step_sizes is not None and chains > 1:
            lo, hi = self.step_sizes.min().item(), self.step_sizes.max().item()
            sizes = f" (per chain {lo:.3g}-{hi:.3g})" if hi > lo else ""
        head = (
            f"{self.kernel}: {chains} chains x {draws} draws, step size {self.step_size:.4g}"
            f"{sizes}, acceptance {self.accept_rate.mean().item():.3f}, {self.grad_evals} "
            f"gradient evaluations per chain, {self.wall_time:.2f} s"
        )
        if self.compiled:
            head += f" ({self.compile_time:.1f} s compiling)"
        if div:
            bad = ", ".join(str(i) for i in self.divergences.nonzero()[:, 0].tolist()[:10])
            head += (
                f"\nWARNING: {div} divergent transitions (chains {bad}): the step is too large "
                "where the target is stiff; raise target_accept (e.g. 0.95; CLI --target-accept) "
                "or pass a smaller step_size"
            )
        stuck = self.stuck_chains()
        if stuck:
            shown = ", ".join(
                f"{c} (acceptance {self.accept_rate[c].item():.2f}, at "
                f"{[round(v, 3) for v in self.samples[c, -1, :4].tolist()]})"
                for c in stuck[:5]
            )
            head += (
                f"\nWARNING: {len(stuck)} stuck chain(s): {shown}; they did not explore the "
                "target: run a longer warm-up, a smaller step_size, or a dense mass "
                "(adapt_mass='dense')"
            )
        return f"{head}\n{self.summary(names)}\n{self.diagnostics_report()}"


def _check_count(value: object, name: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def _initial_points(target, init_x, chains, dtype, device, generator) -> Tensor:
    """Stan's default: uniform on [-2, 2]^dim, unless the user passes ``init``."""
    if init_x is None:
        return 4 * rand((chains, target.dim), generator, dtype, device) - 2
    x = torch.as_tensor(init_x, dtype=dtype, device=device)
    if x.shape == (target.dim,):
        x = x.expand(chains, -1).clone()
    if x.shape != (chains, target.dim):
        raise ValueError(
            f"init has shape {tuple(x.shape)}; expected [{chains}, {target.dim}] "
            f"(one point per chain) or [{target.dim}]"
        )
    check_finite(x, "init")
    return x


def _find_step_size(target, kernel, state, h, generator, params) -> tuple[float, Tensor]:
    """Double or halve ``h`` until the mean acceptance probability crosses the target
    (Hoffman & Gelman 2014, Algorithm 4, on the mean over chains). Returns (h, grad evals
    per chain)."""
    evals, direction = 0, 0
    for _ in range(40):
        _, info = kernel.step(target, state, h, generator, **params)
        evals = evals + info.grad_evals
        a = torch.nan_to_num(info.accept_prob, nan=0.0).mean().item()
        d = 1 if a > kernel.target_accept else -1
        if direction and d != direction:
            break
        direction, h = d, h * 2.0**d
    return h, torch.as_tensor(evals).long().expand(state.x.shape[0])


def _step_sizes(step_size, chains: int, dtype, device) -> Tensor | None:
    """``step_size`` (a float or ``[chains]``) as a ``[chains]`` tensor, checked; or None."""
    if step_size is None:
        return None
    h = torch.as_tensor(step_size, dtype=dtype, device=device)
    if h.ndim == 0:
        h = h.expand(chains).clone()
    if h.shape != (chains,) or not (torch.isfinite(h).all() and (h > 0).all()):
        shown = h.tolist() if h.numel() <= 4 else f"shape {tuple(h.shape)}"
        raise ValueError(
            f"step_size must be finite and > 0, a float or one per chain [{chains}]; got {shown}"
        )
    return h


def per_chain_kernels() -> list[str]:
    """The kernels that take ``adapt_mass="per-chain"`` (``Kernel.per_chain_mass``)."""
    return [n for n, v in KERNELS.items() if v.hamiltonian and v.per_chain_mass]


def _mass_setup(k: Kernel, adapt_mass, inv_mass, dim: int, x0: Tensor):
    """Validate the mass-matrix knobs: returns (metric or None, "diag" / "dense" / "per-chain"
    / None)."""
    if adapt_mass not in (None, True, False, "diag", "dense", "per-chain"):
        raise ValueError(
            f"adapt_mass must be True, False, 'diag', 'dense' or 'per-chain'; got {adapt_mass!r}"
        )
    if adapt_mass == "per-chain" and k.hamiltonian and not k.per_chain_mass:
        per = " / ".join(repr(n) for n in per_chain_kernels())
        raise ValueError(
            f"kernel {k.name!r} takes one mass matrix for all chains; use adapt_mass='diag' "
            f"or 'dense' (or kernel={per} for a mass matrix per chain)"
        )
    if not k.hamiltonian:
        if adapt_mass or inv_mass is not None:
            hmc = ", ".join(n for n, v in KERNELS.items() if v.hamiltonian)
            raise ValueError(
                f"adapt_mass and inv_mass apply to Hamiltonian kernels ({hmc}); "
                f"kernel {k.name!r} has no mass matrix"
            )
        return None, None
    if inv_mass is not None:
        if adapt_mass:
            raise ValueError(
                "inv_mass= fixes the mass matrix; drop adapt_mass= (or inv_mass= to adapt it)"
            )
        m = torch.as_tensor(inv_mass, dtype=x0.dtype, device=x0.device)
        if m.shape not in ((dim,), (dim, dim)):
            raise ValueError(
                f"inv_mass has shape {tuple(m.shape)}; expected [{dim}] (diagonal) or "
                f"[{dim}, {dim}] (dense) for a target on R^{dim}"
            )
        return Metric.from_inv_mass(m), None
    mode = {None: "diag", True: "diag", False: None}.get(adapt_mass, adapt_mass)
    # from_inv_mass, not Metric.identity (whose two fields are one tensor): a compiled block
    # specialized on aliased inputs would recompile once the adapted metric arrives; and the
    # shape it will have (a dense identity for a dense metric, [chains, dim] per chain)
    if mode == "per-chain":
        ones = torch.ones(x0.shape, dtype=x0.dtype, device=x0.device)
        return Metric.from_inv_mass(ones, per_chain=True), mode
    ones = torch.ones(dim, dtype=x0.dtype, device=x0.device)
    return Metric.from_inv_mass(ones.diag() if mode == "dense" else ones), mode


def sample(
    target: Density | Callable[[Tensor], Tensor],
    kernel: str = "mala",
    *,
    chains: int = 4,
    steps: int = 1000,
    warmup: int = 500,
    step_size: float | Tensor | None = None,
    step_jitter: float | None = None,
    init: Tensor | None = None,
    dim: int | None = None,
    n_leapfrog: int = 10,
    max_tree_depth: int | None = None,
    target_accept: float | None = None,
    inv_mass: Tensor | None = None,
    adapt_mass: bool | Literal["diag", "dense", "per-chain"] | None = None,
    step_schedule: Callable[[int, float], float] | None = None,
    thin: int = 1,
    compile: bool | Literal["auto"] = "auto",
    stepwise: bool = False,
    block_size: int = BLOCK,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
) -> MCMCResult:
    """Run ``chains`` chains of ``kernel`` on ``target``: ``warmup`` adapting, then ``steps``.

    Args:
        target: a ``Density`` or a function ``x [chains, dim] -> log p(x)`` (then give ``dim``
            or ``init``); ``Z`` is never needed.
        kernel: a name in ``KERNELS`` ("rwm", "random_walk", "ula", "mala", "hmc", "sgld", ...).
        step_size: a float or one per chain (``[chains]``), kept fixed; ``None`` adapts one
            step size per chain in warm-up by dual averaging to the kernel's target acceptance
            (RWM 0.234, MALA 0.574, HMC 0.8; ULA tunes with MALA moves at the same step, a
            documented stand-in). Per-chain adaptation (each chain tunes its own step, as
            Stan's chains do) lets a chain that starts in a stiff region shrink its step and
            leave instead of diverging forever. "random_walk" and "sgld" need ``step_size``.
        step_jitter: after warm-up (or throughout, with a fixed ``step_size``) each chain's
            step is multiplied by a fresh ``u ~ U(1 - step_jitter, 1 + step_jitter)`` every
            transition (Neal 2011, sec. 5.4.2.3), which with a fixed ``n_leapfrog`` also varies
            the trajectory length. ``None``: the kernel's default (``Kernel.step_jitter``).
        inv_mass: a fixed inverse mass matrix for Hamiltonian kernels, ``[dim]`` (diagonal) or
            ``[dim, dim]`` (dense); no mass adaptation then.
        adapt_mass: Hamiltonian kernels: "diag" (default; True means the same), "dense" (full
            covariance, for correlated targets), "per-chain" (each chain its own diagonal, as
            Stan, NumPyro and BlackJAX adapt it; HMC and NUTS) or False; Stan's windowed
            estimates, of each chain's own draws, pooled over chains for "diag" (the
            geometric mean of their variances) and "dense" (their covariances averaged).
        n_leapfrog: leapfrog steps per transition, for kernels that take it (HMC).
        target_accept: the acceptance rate warm-up tunes to, instead of the kernel's (Stan's
            ``adapt_delta``): raise it (0.9-0.99) to take smaller steps where a target has
            stiff regions that cause divergences.
        max_tree_depth: NUTS only: at most ``2^max_tree_depth - 1`` leapfrog steps per
            transition (default 10, as Stan).
        step_schedule: ``(iteration, step_size) -> step size`` for this iteration; SGLD's
            default is ``h (1 + t / 100)^-0.55`` (Welling & Teh 2011). Runs transition by
            transition (no blocks).
        compile: run blocks of transitions as one ``torch.compile``-d call (True), eagerly
            (False), or "auto": compile when ``(warmup + steps) x n_leapfrog`` (HMC; x 1 for the
            others) ``>= AUTO_COMPILE_WORK`` (100,000; compiling costs seconds, so short runs
            stay eager); NUTS (up to 128 chains) runs its first block eagerly and compiles the
            rest if its trees say they would take ``NUTS_AUTO_COMPILE_LEAVES`` (30,000) leaf
            iterations or more (``nuts_auto_compile``). The same seed gives the same
            chains either way, up to floating-point rounding (compiled code may round
            differently; an accept/reject decision at the edge can then differ).
        stepwise: NUTS: in a block, run each chain's transitions back to back instead of in
            lock step (where every transition waits for the chain with the longest tree):
            the same chains for the same seed, in ``max_j sum_i n_ij`` leaf iterations instead
            of ``sum_i max_j n_ij`` (``n_ij`` chain ``j``'s leapfrog steps in transition
            ``i``). Compiled it runs 1.04-1.43x faster on 100-D Gaussians at 64 chains but
            compiles 7-16 s longer, and eagerly it is slower: for long compiled runs.
        block_size: transitions per block (compiled call); mass windows align to it.
        init: ``[chains, dim]`` or ``[dim]`` starting points; default uniform on [-2, 2].
    """
    k: Kernel = get_kernel(kernel)
    if target_accept is not None:
        if not (isinstance(target_accept, float | int) and 0 < target_accept < 1):
            raise ValueError(f"target_accept must be a number in (0, 1); got {target_accept!r}")
        if k.target_accept is None:
            raise ValueError(f"kernel {kernel!r} does not tune its step size; drop target_accept")
        k = dataclasses.replace(k, target_accept=float(target_accept))
    chains, steps = _check_count(chains, "chains", 1), _check_count(steps, "steps", 1)
    warmup, thin = _check_count(warmup, "warmup", 0), _check_count(thin, "thin", 1)
    block_size = _check_count(block_size, "block_size", 1)
    if stepwise not in (True, False):
        raise ValueError(f"stepwise must be True or False; got {stepwise!r}")
    if stepwise and (k.stepwise is None or not k.compilable):
        able = ", ".join(n for n, v in KERNELS.items() if v.stepwise is not None)
        raise ValueError(
            f"stepwise=True applies to kernels whose transitions vary in length ({able}); "
            f"kernel {kernel!r} runs in lock step: drop stepwise"
        )
    if compile not in (True, False, "auto"):
        raise ValueError(f"compile must be True, False or 'auto'; got {compile!r}")
    if not isinstance(target, Density):
        if not callable(target):
            raise ValueError("target must be a scorelab Density or a function x -> log p(x)")
        if dim is None and init is None:
            raise ValueError("a log-density function needs dim= (or init=) to know the dimension")
        target = from_log_prob(target, dim if dim is not None else torch.as_tensor(init).shape[-1])
    if not getattr(target, "has_log_prob", True) and (kernel != "ula" or step_size is None):
        raise ValueError(
            f"{target!r} has a score but no log-density: use kernel 'ula' with a fixed "
            "step_size (MH kernels and step-size tuning need log p)"
        )
    device = torch.device(device or (init.device if isinstance(init, Tensor) else "cpu"))
    fixed_h = _step_sizes(step_size, chains, dtype, device)
    jitter = k.step_jitter if step_jitter is None else step_jitter
    if not (isinstance(jitter, float | int) and not isinstance(jitter, bool) and 0 <= jitter < 1):
        raise ValueError(f"step_jitter must be a number in [0, 1); got {step_jitter!r}")
    jitter = float(jitter)
    if fixed_h is None and k.target_accept is None:
        raise ValueError(f"kernel {kernel!r} has no acceptance rate to tune; pass step_size=")
    if kernel == "sgld" and step_schedule is None:
        step_schedule = lambda t, h: h * (1 + t / 100) ** -0.55  # noqa: E731
    params = {"n_leapfrog": _check_count(n_leapfrog, "n_leapfrog", 1)} if k.uses_n_leapfrog else {}
    if max_tree_depth is not None:
        if kernel != "nuts":
            raise ValueError(f"max_tree_depth applies to kernel 'nuts' only; got kernel {kernel!r}")
        params["max_tree_depth"] = _check_count(max_tree_depth, "max_tree_depth", 1)

    start = time.perf_counter()
    x0 = _initial_points(target, init, chains, dtype, device, generator)
    metric, mass_mode = _mass_setup(k, adapt_mass, inv_mass, target.dim, x0)
    if metric is not None:
        params["inv_mass"] = metric
    with torch.no_grad():
        state = _init_state(target, k, x0)
    evals = torch.zeros(chains, dtype=torch.long, device=device)
    adapting = fixed_h is None and warmup > 0
    if fixed_h is None:
        with torch.no_grad():
            h0, spent = _find_step_size(target, k, state, 0.1, generator, params)
        evals += spent.to(device)
        fixed_h = torch.full((chains,), h0, dtype=dtype, device=device)
    da = da_init(fixed_h)
    adapter = k.adapter(warmup, chains, target.dim) if k.adapter is not None and warmup else None
    # ULA is tuned with MALA moves at the same step size: adjusted moves cannot run away while
    # the step size is still too large, and the tuned step keeps ULA's bias small.
    warm_k = get_kernel("mala") if kernel == "ula" and adapting else k
    if warm_k is not k:
        warm_k = dataclasses.replace(warm_k, target_accept=k.target_accept)
    # blocks need fixed random shapes, one kernel for the whole block, and no per-transition
    # Python hooks; otherwise warm-up and/or sampling go one transition at a time
    blocked_warm = warm_k is k and adapter is None and k.compilable and step_schedule is None
    blocked_sample = k.compilable and step_schedule is None
    mass = None
    if mass_mode is not None and warmup:
        mass = MassAdaptation(
            warmup, mass_mode == "dense", block_size if blocked_warm else 1,
            per_chain=mass_mode == "per-chain",
        )  # fmt: skip

    out = _Outputs(chains, steps, thin, warmup, target.dim, dtype, device)
    total = warmup + steps
    bar = progress_counter(total, kernel, show=progress)
    # NUTS under "auto" decides after its first block (eager), from its trees; never above
    # 128 chains: at 1024 chains (100-D Gaussian) a compiled block ran 1.1 s a transition
    # against 0.55 s for the earlier gathered eager code, after a 700 s compile (H4, #16)
    decide_nuts = compile == "auto" and kernel == "nuts" and chains <= 128
    if compile == "auto":
        compile = kernel != "nuts" and total * params.get("n_leapfrog", 1) >= AUTO_COMPILE_WORK
    engine = _BlockEngine(target, block_size, compile, jitter, stepwise)
    t = 0
    while t < total:
        warm = t < warmup
        if blocked_warm if warm else blocked_sample:
            # a block may run past the end of warm-up (the flag stops adapting there) and past
            # the end of the run (the extra transitions are dropped)
            flags = torch.arange(t, t + block_size, device=device) < (warmup if adapting else 0)
            run_params = params | (adapter.final_params() if adapter is not None else {})
            state, da, ys = engine.run(k, state, da, flags, run_params, generator)
            n = block_size
            if decide_nuts:
                engine.mode = nuts_auto_compile(ys[5], total - t - n)
                decide_nuts = False
        else:
            used = warm_k if warm else k
            run_params = params | (adapter.params() if adapter is not None and warm else {})
            if adapter is not None and not warm:
                run_params = params | adapter.final_params()
            flag = bool(warm and adapting)
            h_over = None
            if step_schedule is not None:
                h_now = da_step_size(da, flag).median().item()
                h_over = torch.full((chains,), step_schedule(t, h_now), dtype=dtype, device=device)
            old = state
            state, da, ys, info = _transition(
                used, target, run_params, state, da, flag, generator, h_over, jitter
            )
            ys = (*(y.unsqueeze(0) for y in ys[:6]), {n: v[None] for n, v in ys[6].items()})
            if adapter is not None and warm:
                adapter.update(t, old, state, info, ys[4][0])
            n = 1
        evals += ys[5][: total - t].sum(0)
        xs = ys[0]
        if warm and mass is not None:
            estimate = mass.observe(t, xs[: max(0, warmup - t)])
            if estimate is not None:
                metric = Metric.from_inv_mass(estimate.to(dtype), mass.per_chain)
                params["inv_mass"] = metric
                if adapting:  # a new metric: restart step-size adaptation from the current step
                    da = da_init(da.log_step.exp())
        out.record(t, ys, k, total)
        t += n
        bar.update(min(n, total - t + n))
        if t % 50 < n:
            h_now, acc = ys[4][-1].median().item(), ys[2][-1].mean().item()
            bar.set_postfix(step=f"{h_now:.3g}", accept=f"{acc:.2f}")
    bar.close()
    final_h = da_step_size(da, torch.tensor(False, device=device))
    n_evals = int(evals.sum())
    return MCMCResult(
        samples=out.samples,
        accept_rate=out.accepted / steps,
        step_size=float(final_h.median()),
        grad_evals=round(n_evals / chains),
        divergences=out.divergences,
        kernel=kernel,
        inv_mass=metric.inv_mass if metric is not None else None,
        wall_time=time.perf_counter() - start,
        step_sizes=final_h,
        total_grad_evals=n_evals,
        extra=out.extra,
        compile_time=engine.compile_time,
        compiled=engine.compiled is not None and engine.used_compiled,
        max_tree_depth=params.get("max_tree_depth", 10) if "tree_depth" in out.extra else None,
    )


def nuts_auto_compile(leaves: Tensor, remaining: int) -> bool:
    """``compile="auto"`` for NUTS: compile the remaining transitions when, at the rate of a
    block's leapfrog steps ``leaves`` ``[block, chains]`` (each transition costing its longest
    tree's leaves, as chains run in lock step), they would take ``NUTS_AUTO_COMPILE_LEAVES``
    leaf iterations or more. A function of the trees, never of timings: the same seed makes
    the same choice (and the compiled blocks continue the eager chains)."""
    per_transition = leaves.max(1).values.double().mean().item()
    return remaining * per_transition >= NUTS_AUTO_COMPILE_LEAVES


def _init_state(target: Density, k: Kernel, x0: Tensor) -> State:
    """The initial state; a log-density that is NaN or inf there is reported, not propagated."""
    state = init(target, x0, with_score=k.uses_score)
    bad = ~torch.isfinite(state.log_prob)
    if state.score is not None:
        bad |= ~torch.isfinite(state.score).all(-1)
    if bad.any():
        c = int(bad.nonzero()[0])
        raise ValueError(
            f"the target's log-density (or score) is {state.log_prob[c].item()} at the initial "
            f"point of chain {c}, x = {x0[c].tolist()}; pass init= with points where it is "
            "finite (inside the support)"
        )
    return state


# -- one transition, and a block of them -------------------------------------------------


def _transition(
    k: Kernel,
    target: Density,
    params: dict,
    state: State,
    da: DAState,
    adapting: Tensor,
    generator,
    h: Tensor | None = None,
    jitter: float = 0.0,
) -> tuple[State, DAState, tuple, Info]:
    """One transition of every chain with per-chain step sizes from the dual-averaging state
    (``h`` overrides them), then one adaptation update where ``adapting`` (a bool scalar
    tensor, or a Python bool eagerly).
    With ``jitter`` ``j > 0`` each chain's step is multiplied by ``u ~ U(1 - j, 1 + j)`` where
    not ``adapting`` (Neal 2011, sec. 5.4.2.3; Stan's ``stepsize_jitter``); the ``[chains]``
    uniforms are drawn in every transition, so the draws' shapes stay fixed.

    Unadjusted kernels' diverged chains are set back to where they were (the runner raises
    after warm-up). Returns the new state, the new adaptation state, the per-chain outputs
    ``(x, accepted, accept_prob, diverged, step size, grad evals, extra)`` and the ``Info``.
    """
    h = da_step_size(da, adapting) if h is None else h
    if jitter:
        h = jittered(h, adapting, jitter, rand(h.shape, generator, h.dtype, h.device))
    new, info = k.step(target, state, h, generator, **params)
    new, da, ys = after_step(k, state, new, info, da, adapting, h)
    return new, da, ys, info


class _BlockEngine:
    """Runs blocks of transitions of one kernel: random numbers pre-drawn per block, the block
    executed eagerly or as one compiled ``scan`` call; or, ``stepwise``, chain by chain
    (``blocks.block_stepwise`` over the kernel's ``Kernel.stepwise``)."""

    def __init__(
        self,
        target: Density,
        block: int,
        compile: bool,
        jitter: float = 0.0,
        stepwise: bool = False,
    ):
        self.target, self.block, self.mode, self.jitter = target, block, compile, jitter
        self.stepwise = stepwise
        self.calls: list[tuple[str, tuple[int, ...], torch.dtype]] | None = None
        self.compiled: Callable | None = None
        self.compile_time, self.used_compiled = 0.0, False
        self.seconds: list[float] = []  # wall time of each block after the first compiled one

    def _record(self, k: Kernel, state: State, da: DAState, params: dict, generator) -> None:
        """Dry run of one transition on a copy of the generator: the kernel's draws (shapes,
        order) per transition; also fills the target's caches outside any compiled graph."""
        if generator is not None:
            scratch = torch.Generator(generator.device).manual_seed(0)
        else:
            scratch = None
        rec = DrawRecorder(scratch)
        with torch.no_grad():
            _transition(
                k, self.target, params, state, da, torch.tensor(False), rec, None, self.jitter
            )
        self.calls = rec.calls

    def _draws(self, generator, device) -> list[Tensor]:
        """The block's random numbers, ``[block, *shape]`` per recorded draw, in order."""
        return [
            (randn if kind == "randn" else rand)((self.block, *shape), generator, dtype, device)
            for kind, shape, dtype in self.calls
        ]

    def run(self, k: Kernel, state: State, da: DAState, flags: Tensor, params: dict, generator):
        if self.calls is None:
            self._record(k, state, da, params, generator)
        draws = self._draws(generator, state.x.device)
        # scan carries tensors only: a kernel without a score carries an empty placeholder
        score = state.x.new_zeros(0) if state.score is None else state.score
        carry = (state.x, state.log_prob, score, tuple(da))
        t0 = time.perf_counter()
        # eager blocks of closed-form targets run in inference mode: no autograd bookkeeping
        # per operation (version counters, views' metadata), about 1.2x faster eagerly on the
        # banana; the carried state is copied out as ordinary tensors below
        inference = not self.mode and not self.target.needs_autograd
        with torch.inference_mode() if inference else torch.no_grad():
            if self.mode:
                first = self.compiled is None
                if first:
                    # a fresh code object per run: dynamo caches compiled graphs per code
                    # object, and many runs in one process must not hit its recompile limit
                    fn = block_stepwise if self.stepwise else _block_scan
                    code, name = fn.__code__.replace(), fn.__name__
                    fresh = types.FunctionType(code, fn.__globals__, name, fn.__defaults__)
                    self.compiled = torch.compile(
                        fresh, fullgraph=True, dynamic=False, options=INDUCTOR_OPTIONS
                    )
                xs = (draws, flags)
                carry, ys = self.compiled(k, self.target, params, self.jitter, carry, xs)
                if first:
                    self.compile_time = time.perf_counter() - t0
                self.used_compiled = True
            else:
                xs = (draws, flags)
                block = block_stepwise if self.stepwise else _block_eager
                carry, ys = block(k, self.target, params, self.jitter, carry, xs)
        if inference:  # the state goes on (to compiled blocks, to the user): inference
            # tensors cannot be updated in place or join autograd there; the outputs ys are
            # only read (copied into the kept draws, averaged by the adaptation)
            carry = tree_map(torch.clone, carry)
        self.seconds.append(time.perf_counter() - t0)
        x, lp, score, da_t = carry
        return State(x, lp, score if state.score is not None else None), DAState(*da_t), ys


def _block_body(k: Kernel, target: Density, params: dict, jitter: float):
    """The scan body: one transition fed its pre-drawn numbers and its adaptation flag."""

    def body(carry, xs):
        x, lp, score, da = carry
        draws, flag = xs
        has_score = score.ndim > 1  # static: the placeholder of scoreless kernels is [0]
        state, da_new, ys, _ = _transition(
            k, target, params, State(x, lp, score if has_score else None), DAState(*da), flag,
            PreDrawn(draws), None, jitter,
        )  # fmt: skip
        new_score = state.score if has_score else score.clone()
        return (state.x, state.log_prob, new_score, tuple(da_new)), ys

    return body


def _block_scan(k: Kernel, target: Density, params: dict, jitter: float, carry, xs):
    """A block as ``torch``'s ``scan`` higher-order op (compiled as one loop)."""
    from torch._higher_order_ops.scan import scan

    return scan(_block_body(k, target, params, jitter), carry, xs)


def _block_eager(k: Kernel, target: Density, params: dict, jitter: float, carry, xs):
    """The same block, one transition after the other, eagerly (what ``scan`` computes). The
    adaptation flags go in as Python bools, so the transition skips the selections a traced
    flag needs (same numbers, fewer operations)."""
    body = _block_body(k, target, params, jitter)
    draws, flags = xs
    per_row = [d.unbind(0) for d in draws]  # views, split once per block
    outs = []
    for i, flag in enumerate(flags.tolist()):
        carry, ys = body(carry, ([d[i] for d in per_row], flag))
        outs.append(ys)
    stacked = tuple(torch.stack([o[j] for o in outs]) for j in range(6))
    extra = {n: torch.stack([o[6][n] for o in outs]) for n in outs[0][6]}
    return carry, (*stacked, extra)


# -- what is kept ------------------------------------------------------------------------


class _Outputs:
    """Accumulates the post-warm-up draws, acceptance, divergences and kernel extras."""

    def __init__(self, chains, steps, thin, warmup, dim, dtype, device):
        self.thin, self.warmup, self.steps = thin, warmup, steps
        self.samples = torch.empty(chains, steps // thin, dim, dtype=dtype, device=device)
        self.accepted = torch.zeros(chains, dtype=dtype, device=device)
        self.divergences = torch.zeros(chains, dtype=torch.long, device=device)
        self.extra: dict[str, Tensor] = {}

    def record(self, t: int, ys: tuple, k: Kernel, total: int) -> None:
        """Keep rows of a block that starts at transition ``t`` (``[n, chains, ...]`` outputs)
        that fall after warm-up and inside the run; raise on an unadjusted divergence."""
        x, accepted, _, diverged, h, _, extra = ys
        n = x.shape[0]
        lo, hi = max(0, self.warmup - t), min(n, total - t)
        if lo >= hi:
            return
        if not k.adjusted and diverged[lo:hi].any():
            row, c = (int(v) for v in diverged[lo:hi].nonzero()[0])
            bad = diverged[lo + row]
            raise DivergenceError(
                f"{k.name} diverged: {int(bad.sum())} of {bad.numel()} chains reached NaN/inf "
                f"at sampling iteration {t + lo + row - self.warmup} with step_size "
                f"{h[lo + row, c].item():.4g}; lower the step size (a Langevin step must stay "
                "below about 2 / L, L the largest curvature of -log p)"
            )
        self.accepted += accepted[lo:hi].to(self.accepted.dtype).sum(0)
        self.divergences += diverged[lo:hi].long().sum(0)
        # draw i (0-based after warm-up) is kept when (i + 1) % thin == 0, at column i // thin:
        # rows first, first + thin, ... of the block (slices: no index tensors)
        i0 = t + lo - self.warmup  # draw index of row lo
        first = lo + (self.thin - 1 - i0) % self.thin
        if first >= hi:
            return
        rows = slice(first, hi, self.thin)
        c0 = (t + first - self.warmup) // self.thin
        n = len(range(first, hi, self.thin))
        self.samples[:, c0 : c0 + n] = x[rows].transpose(0, 1)
        if "diverged" not in extra:  # every kernel's flags, so divergent_draws() says where
            extra = {**extra, "diverged": diverged}
        for name, v in extra.items():
            if name not in self.extra:
                shape = (v.shape[1], self.samples.shape[1])
                self.extra[name] = torch.zeros(shape, dtype=v.dtype, device=v.device)
            self.extra[name][:, c0 : c0 + n] = v[rows].transpose(0, 1)
