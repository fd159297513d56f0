"""Diffusion samplers on exact-score Gaussian mixtures, side by side with diffusers and k-diffusion.

Run from the repository root. The peers are benchmark-only and a missing one is skipped with a
message; install them without letting pip touch torch: ``pip install --no-deps diffusers
k-diffusion torchsde torchdiffeq trampoline huggingface-hub`` plus their small pure-Python
dependencies (regex, safetensors, importlib_metadata; huggingface-hub 2.x also imports httpx2
and hf-xet)::

    python benchmarks/samplers.py            # 10,000 samples, NFE 10/20/50/100, writes results
    python benchmarks/samplers.py --quick    # 2,000 samples, NFE 10/20, prints the report only
    python benchmarks/samplers.py --out FILE # write the report elsewhere

Every library samples the same two scorelab ``GaussianMixture`` targets (2-D and 64-D, unit
variance) with the same model, the exact posterior-mean denoiser ``gm.denoise``, in float32
with fixed seeds; a counting wrapper reports the denoiser calls each sampler really made. The
quality of 10,000 samples is the sliced Wasserstein-2 distance to 10,000 exact samples (the
same reference set and projections for everyone) and the mode-weight error; the floor (exact
samples against the reference) is reported in the same tables. Last, the overhead ratio of
scorelab's ODE samplers: wall time / (NFE x one denoiser call) at batch 10,000 on the 64-D
mixture. See ``benchmarks/results/samplers.md`` for the method in full.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from _common import emit, machine, torch_threads
from _peers import load_diffusers, load_kdiffusion_sampling, version
from torch import Tensor
from torch.distributions import MultivariateNormal

import scorelab
from scorelab import diffusion
from scorelab.densities import GaussianMixture
from scorelab.diffusion import DDPM, EDM, Process
from scorelab.diffusion.schedules import optimized_sigmas
from scorelab.metrics.distances import sliced_wasserstein

RESULTS = Path(__file__).resolve().parent / "results" / "samplers.md"
SEED = 0  # sampler noise (every sampler, every library)
REF_SEED = 1  # the exact reference set
FLOOR_SEEDS = tuple(range(2, 12))  # 10 independent exact sets for the floor
PROJ_SEED = 1234  # sliced-Wasserstein projections
N_PROJECTIONS = 256
EDM_SIGMAS = (EDM.sigma_min, EDM.sigma_max)  # 0.002, 80: k-diffusion's Karras schedule too
DDPM_BETAS = {"beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}
RK45_TOLS = (1e-2, 1e-3, 1e-4)
RK45_BUDGET = 1000  # nfe for rk45: a bound it stays under at these tolerances
OVERHEAD_SAMPLERS = ("euler", "heun", "dpmpp_2m")
OVERHEAD_AIM = 1.05
DIAGNOSTIC = "diagnostic: scorelab"  # rows that are not in the ours-vs-peers verdict
DIAGNOSTIC_TAG = "ddpm, diffusers' linspace levels"
PEERS = ("diffusers", "k-diffusion")


# -- targets ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    name: str
    description: str
    gm: GaussianMixture


def unit_variance(weights: Tensor, means: Tensor, covs: Tensor) -> GaussianMixture:
    """The mixture rescaled so that its average per-coordinate variance is 1."""
    gm = GaussianMixture(weights, means, covs)
    c = math.sqrt(float(torch.trace(gm.cov)) / gm.dim)
    return GaussianMixture(weights, means / c, covs / c**2)


def ring_2d() -> Target:
    """8 anisotropic Gaussians on a ring, weights 1:2:...:8, elongated along the ring."""
    angle = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    radial = torch.stack([angle.cos(), angle.sin()], -1)
    tangent = torch.stack([-angle.sin(), angle.cos()], -1)
    covs = 0.25**2 * tangent[:, :, None] * tangent[:, None, :]
    covs = covs + 0.05**2 * radial[:, :, None] * radial[:, None, :]
    weights = torch.arange(1, 9, dtype=torch.float64) / 36
    gm = unit_variance(weights, 2 * radial, covs)
    return Target("2-D ring", "8 full-covariance components on a ring, weights 1:...:8", gm)


def mixture_64d(k: int = 6, d: int = 64, seed: int = 0) -> Target:
    """``k`` components with N(0, I) means, random diagonal covariances (per-coordinate
    variances spread over a factor 20), unequal weights."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g, dtype=torch.float64)
    spread = 2 * torch.rand(k, d, generator=g, dtype=torch.float64) - 1
    variances = 0.3 * torch.exp(1.5 * spread)
    weights = torch.linspace(1, 2.5, k, dtype=torch.float64)
    desc = f"{k} diagonal-covariance components, random means, weights 1:...:2.5"
    return Target(f"{d}-D mixture", desc, unit_variance(weights / weights.sum(), means, variances))


def toy_2d() -> Target:
    """The 0.2/0.8 two-mode toy of the issue: 0.2 N((-5, -5), I) + 0.8 N((5, 5), I)."""
    gm = GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], 1.0)
    return Target("0.2/0.8 toy", "0.2 N((-5, -5), I) + 0.8 N((5, 5), I), not rescaled", gm)


# -- the shared model --------------------------------------------------------------------------
class ExactDenoiser:
    """``gm.denoise`` behind a call counter (one call on a batch counts once).

    A per-sample ``sigma`` holding one value is passed on as a scalar: the same numbers, but
    the mixture then broadcasts ``[1, K, d]`` variances instead of building ``[B, K, d]`` ones.
    """

    def __init__(self, gm: GaussianMixture):
        self.gm, self.calls = gm, 0

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        self.calls += 1
        sigma = torch.as_tensor(sigma)
        flat = sigma.reshape(-1)
        if sigma.ndim > 0 and bool((flat == flat[0]).all()):
            sigma = flat[0]
        return self.gm.denoise(x, sigma)


Runner = Callable[[ExactDenoiser, int, int], Tensor]  # (model, n, nfe) -> samples


@dataclass(frozen=True)
class Spec:
    library: str
    name: str
    run: Runner

    @property
    def label(self) -> str:
        return f"{self.library} {self.name}"


# -- scorelab ------------------------------------------------------------------------------
class LinspaceDDPM(DDPM):
    """Diagnostic, not part of scorelab: DDPM's noise levels at diffusers' "linspace" timesteps
    ``round(linspace(0, T - 1, N + 1))[::-1][:-1]``, so the last level is ``t ~ T / N`` (sigma
    0.34 for N = 10) instead of ``t = 0`` (sigma 0.01), then 0."""

    def sigmas(self, steps: int, dtype: torch.dtype = torch.float64) -> Tensor:
        t = torch.linspace(0, self.T - 1, steps + 1, dtype=torch.float64).round().long()
        levels = self.discrete_sigmas[t.flip(0)[:-1]]
        return torch.cat([levels, levels.new_zeros(1)]).to(dtype)


def scorelab_spec(
    sampler: str, process: str | Process, tag: str = "", library: str = "scorelab", **params: Any
) -> Spec:
    def run(model: ExactDenoiser, n: int, nfe: int) -> Tensor:
        g = torch.Generator().manual_seed(SEED)
        res = diffusion.sample(
            model,
            n,
            sampler=sampler,
            nfe=nfe,
            process=process,
            shape=(model.gm.dim,),
            batch_size=n,
            generator=g,
            progress=False,
            **params,
        )
        return res.samples

    extra = "".join(f", {k}={v}" for k, v in params.items())
    return Spec(library, f"{sampler} ({tag or process}{extra})", run)


def scorelab_specs() -> list[Spec]:
    shipped = [
        ("euler", "edm"),
        ("heun", "edm"),
        ("dpmpp_2m", "edm"),
        ("dpmpp_3m", "edm"),
        ("dpmpp_3m_sde", "edm"),
        ("unipc", "edm"),
        ("ipndm", "edm"),
        ("unipc", "ve"),
        ("ddim", "ddpm"),
        ("ddpm", "ddpm"),
        ("ddpm", "edm"),
        ("euler_maruyama", "vp"),
        ("euler_maruyama", "edm"),
        ("pc", "ve"),
        ("pc", "edm"),
    ]
    return [
        defaults_spec(),
        *(default_levels_spec(sampler) for sampler in ("dpmpp_2m", "dpmpp_3m", "ipndm")),
        *(scorelab_spec(sampler, process) for sampler, process in shipped),
        scorelab_spec("dpmpp_2m", LinspaceDDPM(), DIAGNOSTIC_TAG, library=DIAGNOSTIC),
    ]


DEFAULTS_LABEL = "scorelab defaults (unipc, default levels, data prior)"


def defaults_run(model: ExactDenoiser, n: int, nfe: int, seed: int = SEED, **kw: Any) -> Tensor:
    """``diffusion.sample`` with nothing but ``nfe`` (and the data's moments, which a run or a
    known density supplies; ``ExactDenoiser`` hides the mixture's)."""
    gm = model.gm
    return diffusion.sample(model, n, nfe=nfe, prior_moments=(gm.mean, gm.cov), shape=(gm.dim,),
                            batch_size=n, generator=torch.Generator().manual_seed(seed),
                            progress=False, **kw).samples  # fmt: skip


def defaults_spec() -> Spec:
    return Spec("scorelab", "defaults (unipc, default levels, data prior)", defaults_run)


def default_levels_spec(sampler: str) -> Spec:
    def run(model: ExactDenoiser, n: int, nfe: int) -> Tensor:
        return defaults_run(model, n, nfe, sampler=sampler)

    return Spec("scorelab", f"{sampler} (default levels, data prior)", run)


# -- diffusers: epsilon-prediction schedulers on DDPM's linear VP schedule -----------------------
def epsilon(model: ExactDenoiser, x_vp: Tensor, sigma: float) -> Tensor:
    """``eps(x_t)`` from the exact denoiser. With ``sigma = sqrt((1 - ab) / ab)``,
    ``x_t = sqrt(ab) x0 + sqrt(1 - ab) eps = sqrt(ab) (x0 + sigma eps)``, so the sigma-space
    point is ``y = x_t / sqrt(ab) = x_t sqrt(1 + sigma^2)`` and ``eps = (y - D(y, sigma)) / sigma``.
    """
    y = x_vp * math.sqrt(1 + sigma**2)
    return (y - model(y, torch.tensor(sigma, dtype=y.dtype))) / sigma


def scheduler_sigma(sched: Any, i: int, t: Tensor) -> float:
    """The sigma-space noise level the scheduler assigns to its ``i``-th model call: its own
    ``sigmas[i]`` where it keeps one per timestep (Euler, Heun, DPM-Solver, UniPC), else
    ``sqrt((1 - ab_t) / ab_t)`` at the integer timestep (DDPM, DDIM)."""
    sigmas = getattr(sched, "sigmas", None)
    if sigmas is not None and len(sigmas) == len(sched.timesteps) + 1:
        return float(sigmas[i])
    ab = float(sched.alphas_cumprod[int(t)])
    return math.sqrt((1 - ab) / ab)


def diffusers_loop(sched: Any, model: ExactDenoiser, n: int) -> Tensor:
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(n, model.gm.dim, generator=g) * sched.init_noise_sigma
    kwargs = {"generator": g} if "generator" in inspect.signature(sched.step).parameters else {}
    for i, t in enumerate(sched.timesteps):
        eps = epsilon(model, sched.scale_model_input(x, t), scheduler_sigma(sched, i, t))
        x = sched.step(eps, t, x, **kwargs).prev_sample
    return x


def diffusers_spec(lib: ModuleType, cls: str, name: str, order: int = 1, **config: Any) -> Spec:
    def run(model: ExactDenoiser, n: int, nfe: int) -> Tensor:
        sched = getattr(lib, cls)(
            num_train_timesteps=1000, prediction_type="epsilon", **DDPM_BETAS, **config
        )
        sched.set_timesteps(nfe if order == 1 else (nfe + 1) // 2)
        return diffusers_loop(sched, model, n)

    return Spec("diffusers", name, run)


def diffusers_specs(lib: ModuleType | None) -> list[Spec]:
    if lib is None:
        return []
    return [
        diffusers_spec(lib, "DDPMScheduler", "DDPM", clip_sample=False),
        diffusers_spec(lib, "DDIMScheduler", "DDIM", clip_sample=False),
        diffusers_spec(lib, "EulerDiscreteScheduler", "Euler"),
        diffusers_spec(lib, "EulerDiscreteScheduler", "Euler (karras)", use_karras_sigmas=True),
        diffusers_spec(lib, "HeunDiscreteScheduler", "Heun", order=2),
        diffusers_spec(lib, "DPMSolverMultistepScheduler", "DPM-Solver++(2M)"),
        diffusers_spec(
            lib, "DPMSolverMultistepScheduler", "DPM-Solver++(2M) (karras)", use_karras_sigmas=True
        ),
        diffusers_spec(lib, "UniPCMultistepScheduler", "UniPC (bh2, order 2)"),
    ]


# -- k-diffusion: the denoiser itself on the Karras schedule --------------------------------------
class MonotoneBrownian:
    """Brownian increments ``(W(sigma) - W(sigma_next)) / sqrt(sigma - sigma_next)`` for
    k-diffusion's SDE samplers, exact when every query starts at a level already visited and
    ends below all of them, which is how those samplers sweep sigma downward.

    It replaces k-diffusion's default ``BrownianTreeNoiseSampler`` (torchsde), which gives the
    same law but took over 4 minutes per row on the 64-D target here.
    """

    def __init__(self, x: Tensor, seed: int):
        self.shape, self.dtype = x.shape, x.dtype
        self.generator = torch.Generator().manual_seed(seed)
        self.path: dict[float, Tensor] = {}  # W at the visited levels

    def _at(self, sigma: float) -> Tensor:
        if not self.path:
            self.path[sigma] = torch.zeros(self.shape, dtype=self.dtype)
        sigma = next((s for s in self.path if abs(s - sigma) <= 1e-6 * s), sigma)  # float32
        if sigma not in self.path:
            last = min(self.path)
            if sigma > last:
                raise ValueError(f"query at sigma {sigma} between visited levels")
            z = torch.randn(self.shape, generator=self.generator, dtype=self.dtype)
            self.path[sigma] = self.path[last] + math.sqrt(last - sigma) * z
        return self.path[sigma]

    def __call__(self, sigma: Tensor, sigma_next: Tensor) -> Tensor:
        hi, lo = float(sigma), float(sigma_next)
        w_hi = self._at(hi)
        return (w_hi - self._at(lo)) / math.sqrt(hi - lo)


def kdiffusion_spec(kd: ModuleType, fn: str, evals_per_step: int = 1, sde: bool = False) -> Spec:
    def run(model: ExactDenoiser, n: int, nfe: int) -> Tensor:
        steps = nfe if evals_per_step == 1 else (nfe + 1) // 2
        sigmas = kd.get_sigmas_karras(steps, *EDM_SIGMAS)
        g = torch.Generator().manual_seed(SEED)
        x = torch.randn(n, model.gm.dim, generator=g) * sigmas[0]
        torch.manual_seed(SEED)  # k-diffusion draws its other noise from the global generator
        kwargs = {"noise_sampler": MonotoneBrownian(x, SEED)} if sde else {}
        return getattr(kd, fn)(model, x, sigmas, disable=True, **kwargs)

    return Spec("k-diffusion", fn.removeprefix("sample_"), run)


def kdiffusion_specs(kd: ModuleType | None) -> list[Spec]:
    if kd is None:
        return []
    names = [  # (name, denoiser calls a step, takes a Brownian noise sampler)
        ("euler", 1, False),
        ("lms", 1, False),
        ("dpmpp_2m", 1, False),
        ("euler_ancestral", 1, False),
        ("dpmpp_2m_sde", 1, True),
        ("dpmpp_3m_sde", 1, True),
        ("heun", 2, False),
        ("dpm_2", 2, False),
        ("dpmpp_2s_ancestral", 2, False),
        ("dpmpp_sde", 2, True),
    ]
    return [
        kdiffusion_spec(kd, f"sample_{name}", calls, sde)
        for name, calls, sde in names
        if hasattr(kd, f"sample_{name}")
    ]


# -- quality ----------------------------------------------------------------------------------
def sw2(x: Tensor, ref: Tensor) -> float:
    """Sliced W2 with the same 256 projections for every call."""
    g = torch.Generator().manual_seed(PROJ_SEED)
    return float(sliced_wasserstein(x, ref, n_projections=N_PROJECTIONS, p=2, generator=g))


def mode_error(x: Tensor, gm: GaussianMixture) -> float:
    """``max_k |mean_i r_k(x_i) - w_k|`` with ``r_k`` the exact responsibilities."""
    comps = MultivariateNormal(gm.component_means, covariance_matrix=gm.component_covs)
    logp = comps.log_prob(x.double()[:, None, :]) + gm.weights.log()
    return float((torch.softmax(logp, -1).mean(0) - gm.weights).abs().max())


@dataclass(frozen=True)
class Cell:
    sw: float
    mode: float
    nfe: int  # denoiser calls per sample, counted
    seconds: float


@dataclass
class Reference:
    samples: Tensor
    floor_sw: list[float] = field(default_factory=list)
    floor_mode: list[float] = field(default_factory=list)

    @property
    def tolerance(self) -> float:
        """Two standard deviations of the floor's SW: differences below it are noise."""
        return 2 * statistics.stdev(self.floor_sw)


def reference(gm: GaussianMixture, n: int) -> Reference:
    ref = Reference(gm.sample(n, generator=torch.Generator().manual_seed(REF_SEED)))
    for seed in FLOOR_SEEDS:
        x = gm.sample(n, generator=torch.Generator().manual_seed(seed))
        ref.floor_sw.append(sw2(x, ref.samples))
        ref.floor_mode.append(mode_error(x, gm))
    return ref


def measure(spec: Spec, gm: GaussianMixture, ref: Reference, n: int, nfe: int) -> Cell:
    model = ExactDenoiser(gm)
    start = time.perf_counter()
    try:
        x = spec.run(model, n, nfe)
    except Exception as err:  # a peer's failure is a result, not a crash
        print(f"    {spec.label} at NFE {nfe} failed: {type(err).__name__}: {err}")
        return Cell(math.nan, math.nan, model.calls, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if not torch.isfinite(x).all():
        return Cell(math.nan, math.nan, model.calls, seconds)
    return Cell(sw2(x, ref.samples), mode_error(x, gm), model.calls, seconds)


Table = dict[str, dict[int, Cell]]  # label -> requested NFE -> result


def run_target(target: Target, ref: Reference, specs: list[Spec], nfes: tuple[int, ...]) -> Table:
    n, table = ref.samples.shape[0], {}
    for spec in specs:
        table[spec.label] = {nfe: measure(spec, target.gm, ref, n, nfe) for nfe in nfes}
        cells = table[spec.label].values()
        shown = "  ".join(f"{c.sw:.4f}({c.nfe})" for c in cells)
        print(f"  {spec.label:<46} {shown}  [{sum(c.seconds for c in cells):.1f} s]")
    return table


def rk45_rows(target: Target, ref: Reference) -> list[tuple[float, Cell]]:
    """scorelab's adaptive rk45 (edm) at a few tolerances: its NFE is an outcome, within a
    budget (``RK45_BUDGET``) it does not reach."""
    n, rows = ref.samples.shape[0], []
    for tol in RK45_TOLS:
        spec = scorelab_spec("rk45", "edm", rtol=tol, atol=tol)
        rows.append((tol, measure(spec, target.gm, ref, n, nfe=RK45_BUDGET)))
        print(f"  rk45 tol {tol:g}: SW {rows[-1][1].sw:.4f}, NFE {rows[-1][1].nfe}")
    return rows


# -- overhead ------------------------------------------------------------------------------------
class Probe:
    """``gm.denoise`` as the sampler calls it, timed, and paired with one call on the same ``x``
    with the shared sigma as a scalar, timed too (pairing keeps load drift on a shared machine
    out of the ratio; the order alternates so that warm caches favour neither). The paired
    calls' time is taken out of the sampler's wall time."""

    def __init__(self, gm: GaussianMixture):
        self.gm, self.calls, self.as_called, self.scalar = gm, 0, 0.0, 0.0

    def _timed(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, float]:
        start = time.perf_counter()
        out = self.gm.denoise(x, sigma)
        return out, time.perf_counter() - start

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        self.calls += 1
        if self.calls % 2:
            out, t_called = self._timed(x, sigma)
            t_scalar = self._timed(x, sigma.reshape(-1)[0])[1]
        else:
            t_scalar = self._timed(x, sigma.reshape(-1)[0])[1]
            out, t_called = self._timed(x, sigma)
        self.as_called += t_called
        self.scalar += t_scalar
        return out


@dataclass(frozen=True)
class Overhead:
    sampler: str
    nfe: int
    sampler_s: float  # diffusion.sample's wall time less the paired scalar calls
    as_called_s: float  # its denoiser calls, sigma of shape [batch] as samplers pass it
    scalar_s: float  # the same calls with a scalar sigma

    @property
    def ratio(self) -> float:
        """Wall time / (NFE x one scalar-sigma denoiser call): the headline number."""
        return self.sampler_s / self.scalar_s

    @property
    def ratio_as_called(self) -> float:
        """Wall time / time in the denoiser calls as made: the sampler's own share."""
        return self.sampler_s / self.as_called_s


def overhead_once(gm: GaussianMixture, sampler: str, n: int, nfe: int) -> Overhead:
    probe, g = Probe(gm), torch.Generator().manual_seed(SEED)
    res = diffusion.sample(
        probe,
        n,
        sampler=sampler,
        nfe=nfe,
        process="edm",
        shape=(gm.dim,),
        generator=g,
        batch_size=n,
        progress=False,
    )
    return Overhead(sampler, res.nfe, res.wall_time - probe.scalar, probe.as_called, probe.scalar)


def overhead(gm: GaussianMixture, n: int, nfe: int, repeats: int) -> list[list[Overhead]]:
    """``repeats`` interleaved measurements per sampler."""
    runs: list[list[Overhead]] = [[] for _ in OVERHEAD_SAMPLERS]
    for _ in range(repeats):
        for i, sampler in enumerate(OVERHEAD_SAMPLERS):
            runs[i].append(overhead_once(gm, sampler, n, nfe))
    for rows in runs:
        ratio = statistics.median(o.ratio for o in rows)
        print(f"  overhead {rows[0].sampler}: {ratio:.3f} (vs a scalar-sigma call)")
    return runs


# -- report ----------------------------------------------------------------------------------
def cell_text(cell: Cell, nfe: int, value: float) -> str:
    if not math.isfinite(value):
        return "diverged" if cell.nfe else "failed"
    text = f"{value:.3g}" if value >= 1e-3 else f"{value:.1e}"
    return text if cell.nfe == nfe else f"{text} ({cell.nfe})"


def best(table: Table, nfe: int, ours: bool) -> tuple[str, Cell]:
    rows = [
        (label, cells[nfe])
        for label, cells in table.items()
        if label.startswith("scorelab" if ours else PEERS) and math.isfinite(cells[nfe].sw)
    ]
    return min(rows, key=lambda row: row[1].sw, default=("none", Cell(math.nan, math.nan, 0, 0)))


def quality_table(table: Table, ref: Reference, nfes: tuple[int, ...], metric: str) -> list[str]:
    floor = ref.floor_sw if metric == "sw" else ref.floor_mode
    head = "| library / sampler (process) | " + " | ".join(f"NFE {k}" for k in nfes) + " |"
    lines = [head, "|---|" + "---:|" * len(nfes)]
    mean, sd = statistics.mean(floor), statistics.stdev(floor)
    lines.append(
        f"| *exact vs exact (floor, mean ± sd of {len(floor)})* | "
        + " | ".join(f"*{mean:.3g} ± {sd:.1g}*" for _ in nfes)
        + " |"
    )
    winners = {k: {best(table, k, True)[0], best(table, k, False)[0]} for k in nfes}
    for label, cells in table.items():
        texts = []
        for k in nfes:
            text = cell_text(cells[k], k, getattr(cells[k], metric))
            texts.append(f"**{text}**" if metric == "sw" and label in winners[k] else text)
        lines.append(f"| {label} | " + " | ".join(texts) + " |")
    return lines


def verdicts(table: Table, ref: Reference, nfes: tuple[int, ...]) -> list[str]:
    tol, lines = ref.tolerance, []
    for k in nfes:
        (ol, oc), (pl, pc) = best(table, k, True), best(table, k, False)
        if not math.isfinite(pc.sw):
            lines.append(f"- NFE {k}: best of ours {ol} SW {oc.sw:.4g}; no peer result.")
            continue
        if oc.sw <= pc.sw:
            word = "**better**"
        elif oc.sw <= pc.sw + tol:
            word = "**matches** (within the noise tolerance)"
        else:
            word = "**worse**"
        lines.append(
            f"- NFE {k}: best of ours {ol} SW {oc.sw:.4g} vs best peer {pl} SW "
            f"{pc.sw:.4g} (difference {oc.sw - pc.sw:+.2g}, tolerance {tol:.2g}): "
            f"ours is {word}."
        )
    return lines


DIAGNOSTIC_LABEL = f"{DIAGNOSTIC} dpmpp_2m ({DIAGNOSTIC_TAG})"
SAME_ALGORITHM = (  # (ours, peer): one algorithm on the same (or nearly the same) noise levels
    ("scorelab euler (edm)", "k-diffusion euler"),
    ("scorelab heun (edm)", "k-diffusion heun"),
    ("scorelab dpmpp_2m (edm)", "k-diffusion dpmpp_2m"),
    ("scorelab ddim (ddpm)", "diffusers Euler"),
    (DIAGNOSTIC_LABEL, "diffusers DPM-Solver++(2M)"),
)


def same_algorithm_lines(table: Table, nfes: tuple[int, ...]) -> list[str]:
    """Cross-checks: where two libraries run one algorithm, their SW should agree."""
    lines = []
    for ours, peer in SAME_ALGORITHM:
        if ours in table and peer in table:
            gaps = [abs(table[ours][k].sw - table[peer][k].sw) for k in nfes]
            shown = ", ".join(f"{table[ours][k].sw:.4g} vs {table[peer][k].sw:.4g}" for k in nfes)
            lines.append(f"- {ours} vs {peer}: max SW gap {max(gaps):.2g} ({shown}).")
    return lines


def rk45_lines(rows: list[tuple[float, Cell]]) -> list[str]:
    lines = ["| rtol = atol | NFE (counted) | SW | mode-weight error |", "|---:|---:|---:|---:|"]
    for tol, c in rows:
        lines.append(
            f"| {tol:g} | {c.nfe} | {cell_text(c, c.nfe, c.sw)} | {cell_text(c, c.nfe, c.mode)} |"
        )
    return lines


def overhead_lines(runs: list[list[Overhead]], n: int) -> list[str]:
    lines = [
        "| sampler | NFE | sampler wall s | in denoiser calls as made s | same calls, scalar "
        "sigma s | **ratio** (vs scalar-sigma calls) | ratio vs calls as made |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rows in runs:
        med = {
            key: statistics.median(getattr(o, key) for o in rows)
            for key in ("sampler_s", "as_called_s", "scalar_s", "ratio", "ratio_as_called")
        }
        lines.append(
            f"| {rows[0].sampler} | {rows[0].nfe} | {med['sampler_s']:.2f} | "
            f"{med['as_called_s']:.2f} | {med['scalar_s']:.2f} | **{med['ratio']:.3f}** | "
            f"{med['ratio_as_called']:.3f} |"
        )
    lines.append(
        f"\nBatch {n:,}, NFE 20, {len(runs[0])} interleaved repeats, medians; aim <= "
        f"{OVERHEAD_AIM}."
    )
    return lines


@dataclass
class Results:
    n: int
    nfes: tuple[int, ...]
    targets: list[Target]
    refs: dict[str, Reference]
    tables: dict[str, Table]
    rk45: dict[str, list[tuple[float, Cell]]]
    overhead: list[list[Overhead]]
    overhead_n: int
    meta: dict[str, str]
    targets_text: list[str] = field(default_factory=list)
    digits_text: list[str] = field(default_factory=list)


def header(res: Results) -> list[str]:
    m = res.meta
    return [
        "# Diffusion samplers on exact-score Gaussian mixtures: scorelab vs diffusers and "
        "k-diffusion",
        "",
        f"Generated by `python benchmarks/samplers.py{m['args']}` on {m['date']} "
        f"({m['minutes']} min).",
        "",
        f"- Machine: {m['machine']}; torch threads {m['threads']}; load average at start "
        f"{m['load']}, at the end {m['load_end']} (the machine was shared with other jobs: "
        "timings are noisy).",
        f"- Versions: {m['versions']}.",
        f"- {res.n:,} samples per run, float32, seed {SEED} for every sampler.",
    ]


METHOD = """## Method

- **Model.** Every library gets the same model, scorelab's exact posterior-mean denoiser
  `GaussianMixture.denoise(x, sigma)`, behind one counting wrapper: the NFE in the tables is the
  number of denoiser calls each sampler really made per sample (shown in brackets where it
  differs from the budget; a second-order method spends 2 calls a step, the last step 1, so
  it runs `(NFE + 1) // 2` steps). The wrapper passes a per-sample sigma that holds one value
  on as a scalar (same numbers, faster); it changes nothing else.
- **scorelab.** `diffusion.sample(model, n, sampler=..., nfe=..., process=...)` with each
  sampler on the process(es) that suit it: ODE solvers on `edm` (Karras, sigma 0.002..80,
  rho 7), the ancestral/SDE samplers on their own process (`ddpm`: DDPM's linear schedule,
  T = 1000, trailing spacing; `vp`; `ve`) and on `edm`. `ddim` with eta = 0 on `edm` is Euler
  exactly, so it runs on `ddpm` only. `pc` is one Langevin corrector + one predictor a level.
  `rk45` (adaptive) has its own table: its NFE is an outcome of the tolerance. The row
  "diagnostic: scorelab dpmpp_2m (ddpm, diffusers' linspace levels)" is not a shipped
  configuration and takes no part in the verdict: it runs scorelab's `dpmpp_2m` on a process
  defined in this benchmark (`LinspaceDDPM`) with the noise levels diffusers'
  DPM-Solver++ uses by default, to tell a solver difference from a schedule difference.
- **scorelab defaults.** The first rows are what `diffusion.sample(model, n, nfe=NFE)` runs
  with nothing else but the data's moments (`prior_moments`, as a run folder or a known
  density supplies them): UniPC on `diffusion.default_schedule` from the data-aware prior, and
  `dpmpp_2m`, `dpmpp_3m`, `ipndm` on the same levels and prior. Every other scorelab row names
  its process and starts from the zero-mean prior, as before. The 64-D target has 10
  components (the issue's), the 0.2/0.8 toy is not rescaled (its modes are 14 apart).
- **diffusers.** Schedulers with `num_train_timesteps=1000`, linear betas 1e-4..0.02,
  `prediction_type="epsilon"`, `clip_sample=False` (DDPM, DDIM), defaults otherwise
  (timestep spacing "leading" for DDPM/DDIM, "linspace" for the rest; DPM-Solver++ is
  order 2 multistep with lower-order final steps; UniPC bh2 order 2), plus Karras-sigma
  variants of Euler and DPM-Solver++. Loop: `set_timesteps(steps)`, then for each timestep
  `eps = model(scale_model_input(x, t))`, `x = step(eps, t, x).prev_sample`. The
  epsilon model comes from the denoiser by the sigma-space conversion: with
  `sigma = sqrt((1 - ab) / ab)`, `x_t = sqrt(ab) (x0 + sigma eps)`, so
  `y = x_t sqrt(1 + sigma^2)` and `eps(x_t, t) = (y - D(y, sigma)) / sigma`. The sigma of a
  call is the scheduler's own `sigmas[i]` where it keeps one (Euler, Heun, DPM-Solver++,
  UniPC), else `sqrt((1 - ab_t) / ab_t)` at the integer timestep (DDPM, DDIM), so even
  fractional timesteps get the exact noise level.
- **k-diffusion.** `k_diffusion/sampling.py` loaded on its own (the package `__init__`
  imports torchvision, which has no CPU build here; the one helper it takes from `utils`,
  `append_dims`, is stubbed by a copy, see `benchmarks/_peers.py`). The model is the
  denoiser itself on `get_sigmas_karras(steps, 0.002, 80)`, the same schedule as scorelab's
  `edm`; its noise comes from the global torch generator, seeded. The SDE samplers
  (`dpmpp_sde`, `dpmpp_2m_sde`, `dpmpp_3m_sde`) get a `noise_sampler` that draws exact
  Brownian increments along their downward sweep (`MonotoneBrownian`, same law as the
  default torchsde `BrownianTreeNoiseSampler`, which took over 4 minutes a row in 64-D).
- **Quality.** Sliced Wasserstein-2 (`scorelab.metrics.sliced_wasserstein`, 256 projections,
  projection seed fixed, the same for all) between the generated samples and one fixed set
  of exact samples `gm.sample` of the same size; the floor row is 10 further independent exact
  sets against that reference (mean ± sd). Mode-weight error: `max_k |mean_i r_k(x_i) - w_k|`
  with `r_k` the exact responsibilities under the mixture (soft assignment; its floor is the
  multinomial noise of exact samples). Bold: the best of ours and the best peer per column.
- **Verdict.** "Matches" means the best of ours is within two standard deviations of the
  floor's SW of the best peer (differences below that are sampling noise of one seed). All
  samplers start from the same prior noise, so deterministic samplers that converge land on
  nearly the same samples and share one draw of the floor's noise; in 2-D the SW2 floor is
  dominated by how many exact samples fall in each mode, hence its large spread.
"""


OVERHEAD_TEXT = """`diffusion.sample(gm, n, sampler=..., nfe=20, process="edm")` end to end, the
model being `gm.denoise` behind a probe that times each call as the sampler makes it (sigma of shape
`[batch]`) and, right after it, the same call with the shared sigma as a scalar, which is
"one denoiser call" in the ratio; the probe's extra calls are taken out of the wall time.
Pairing the calls keeps the ratio honest on a shared machine, where separate timings drift by
a factor of several. Last column: the same wall time against the calls as made, i.e. what
the sampler adds on top of its own denoiser calls."""


def target_section(res: Results, target: Target) -> list[str]:
    table, ref = res.tables[target.name], res.refs[target.name]
    return [
        f"## {target.name}: {target.description}",
        "",
        "### Sliced W2 to exact samples (lower is better)",
        "",
        *quality_table(table, ref, res.nfes, "sw"),
        "",
        "### Mode-weight error (lower is better)",
        "",
        *quality_table(table, ref, res.nfes, "mode"),
        "",
        "### Best of scorelab vs best peer, by SW",
        "",
        *verdicts(table, ref, res.nfes),
        "",
        "### Same algorithm in two libraries (SW at each NFE)",
        "",
        *same_algorithm_lines(table, res.nfes),
        "",
        "### scorelab rk45 (adaptive, edm)",
        "",
        *rk45_lines(res.rk45[target.name]),
        "",
    ]


def report(res: Results) -> str:
    lines = [*header(res), "", *res.targets_text, "", *res.digits_text, "", METHOD]
    for target in res.targets:
        lines += target_section(res, target)
    lines += [
        f"## Overhead ratio: scorelab sampler wall time / (NFE x one denoiser call), "
        f"{res.targets[1].name}",
        "",
        OVERHEAD_TEXT,
        "",
        *overhead_lines(res.overhead, res.overhead_n),
        "",
    ]
    return "\n".join(lines)


# -- solver x schedule at a fixed budget (--grid) ---------------------------------------------
GRID_RESULTS = RESULTS.with_name("samplers_grid.md")
GRID_SOLVERS = ("euler", "heun", "dpmpp_2m", "dpmpp_3m", "dpmpp_3m_sde", "unipc", "ipndm")
GRID_SEEDS = (0, 1, 2)  # sampler seeds; the reference and floor sets are fixed
OPT_SEED, OPT_BATCH = 99, 512  # the draws the optimized schedule is fitted on


@dataclass(frozen=True)
class Schedule:
    name: str
    sigmas: Callable[[GaussianMixture, int], Tensor | None]  # (gm, steps) -> levels or None
    process: str = "edm"  # the levels when ``sigmas`` gives None
    prior: str = "zero"


def fitted(sigma_max: float, fine_scale: float | None = None
           ) -> Callable[[GaussianMixture, int], Tensor]:  # fmt: skip
    """``optimized_sigmas`` (GITS-style dynamic programming) for the exact model, computed once
    per target and step count from ``OPT_BATCH`` draws of the data-aware prior."""
    cache: dict[tuple[int, int], Tensor] = {}

    def make(gm: GaussianMixture, steps: int) -> Tensor:
        key = (id(gm), steps)
        if key not in cache:
            g = torch.Generator().manual_seed(OPT_SEED)
            prior = diffusion.DataPrior.from_moments(gm.mean, gm.cov, gm.dim)
            x = prior.sample(OPT_BATCH, (gm.dim,), sigma_max, g)
            cache[key] = optimized_sigmas(
                gm.denoise, x, steps, sigma_max=sigma_max, fine_scale=fine_scale
            )
        return cache[key]

    return make


def grid_schedules() -> list[Schedule]:
    none = lambda gm, steps: None  # noqa: E731
    edm20 = lambda gm, steps: EDM(sigma_max=20.0).sigmas(steps)  # noqa: E731
    return [
        Schedule("edm (Karras, 0.002..80), zero-mean prior", none),
        Schedule("ve (geometric, 0.01..50), zero-mean prior", none, process="ve"),
        Schedule("edm 0.002..20, data prior", edm20, prior="data"),
        Schedule("optimized ..80, zero-mean prior", fitted(80.0)),
        Schedule("optimized ..20, data prior", fitted(20.0), prior="data"),
        Schedule("optimized ..80, fine_scale 0.01", fitted(80.0, 0.01)),
        Schedule("optimized ..20, fine_scale 0.01, data prior", fitted(20.0, 0.01), prior="data"),
    ]


def labels(x: Tensor, gm: GaussianMixture) -> Tensor:
    """The most likely component of each point under the exact mixture."""
    comps = MultivariateNormal(gm.component_means, covariance_matrix=gm.component_covs)
    return (comps.log_prob(x.double()[:, None, :]) + gm.weights.log()).argmax(-1)


def within_mode_sw(x: Tensor, ref: Tensor, gm: GaussianMixture) -> float:
    """Sliced W2 within each component (points assigned by ``labels``), averaged with the
    mixture weights: the shape of every mode, whatever the share of points it got."""
    lx, lr = labels(x, gm), labels(ref, gm)
    total = 0.0
    for k, w in enumerate(gm.weights.tolist()):
        xk, rk = x[lx == k], ref[lr == k]
        total += w * (sw2(xk, rk) if len(xk) > 1 and len(rk) > 1 else math.inf)
    return total


@dataclass(frozen=True)
class GridCell:
    sw: float  # sliced W2 to the reference set
    within: float  # within-mode sliced W2 (``within_mode_sw``)
    mode: float  # mode-weight error


def grid_floor(gm: GaussianMixture, ref: Reference) -> GridCell:
    """The three metrics of exact sample sets (``FLOOR_SEEDS``) against the reference, averaged."""
    n, within = ref.samples.shape[0], []
    for seed in FLOOR_SEEDS:
        within.append(within_mode_sw(gm.sample(n, generator=torch.Generator().manual_seed(seed)),
                                     ref.samples, gm))  # fmt: skip
    return GridCell(
        statistics.mean(ref.floor_sw), statistics.mean(within), statistics.mean(ref.floor_mode)
    )


def grid_cell(gm: GaussianMixture, ref: Reference, solver: str, sched: Schedule, nfe: int,
              seed: int) -> GridCell:  # fmt: skip
    model, n = ExactDenoiser(gm), ref.samples.shape[0]
    levels = sched.sigmas(gm, diffusion.steps_for_nfe(solver, nfe, {}))
    try:
        x = diffusion.sample(
            model, n, sampler=solver, nfe=nfe, process=sched.process, sigmas=levels,
            prior=sched.prior, prior_moments=(gm.mean, gm.cov) if sched.prior == "data" else None,
            shape=(gm.dim,), batch_size=n, progress=False,
            generator=torch.Generator().manual_seed(seed),
        ).samples  # fmt: skip
    except Exception as err:  # a divergence is a result
        print(f"    {solver} / {sched.name}: {type(err).__name__}: {err}")
        return GridCell(math.nan, math.nan, math.nan)
    if not torch.isfinite(x).all():
        return GridCell(math.nan, math.nan, math.nan)
    return GridCell(sw2(x, ref.samples), within_mode_sw(x, ref.samples, gm), mode_error(x, gm))


def mean_sd(values: list[float]) -> str:
    if not all(math.isfinite(v) for v in values):
        return "diverged"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def run_grid(n: int, nfes: tuple[int, ...], solvers: tuple[str, ...] = GRID_SOLVERS,
             pick: tuple[int, ...] | None = None) -> tuple[list[str], dict]:  # fmt: skip
    """Every solver x schedule (those numbered in ``pick``, else all): SW2, within-mode SW2 and
    mode-weight error, each divided by its exact-sampling floor, mean ± sd over ``GRID_SEEDS``."""
    targets, scheds = [ring_2d(), mixture_64d(k=10)], grid_schedules()
    scheds = scheds if pick is None else [scheds[i] for i in pick]
    lines, summary = [], {}
    metrics = (("sw", "SW2 / floor"), ("within", "within-mode SW2 / floor"),
               ("mode", "mode-weight error / floor"))  # fmt: skip
    for target in targets:
        ref = reference(target.gm, n)
        floor = grid_floor(target.gm, ref)
        for nfe in nfes:
            cells = {
                (solver, sched.name): [
                    grid_cell(target.gm, ref, solver, sched, nfe, seed) for seed in GRID_SEEDS
                ]
                for solver in solvers
                for sched in scheds
            }
            for key, runs in cells.items():
                summary[(target.name, nfe, *key)] = {
                    m: [getattr(c, m) / getattr(floor, m) for c in runs] for m, _ in metrics
                }
            for m, title in metrics:
                lines += [
                    f"### {target.name}, NFE {nfe}: {title} (floor {getattr(floor, m):.3g})",
                    "",
                    "| solver | " + " | ".join(s.name for s in scheds) + " |",
                    "|---|" + "---:|" * len(scheds),
                ]
                for solver in solvers:
                    row = [mean_sd(summary[(target.name, nfe, solver, s.name)][m]) for s in scheds]
                    lines.append(f"| {solver} | " + " | ".join(row) + " |")
                    if m == "sw":
                        print(f"  {target.name} NFE {nfe} {solver:<13} " + "  ".join(row))
                lines.append("")
    return lines, summary


GRID_TEXT = """# Solver x schedule at a fixed budget, exact-score mixtures

Generated by `python benchmarks/samplers.py --grid` on {date} ({minutes} min); {machine}.
{n:,} samples per run in float32, the model the exact denoiser `gm.denoise`. Three metrics
against one fixed exact reference set: sliced W2 (256 fixed projections), within-mode sliced
W2 (points assigned to their most likely component, SW2 per component, weighted by the
mixture weights: the shape of the modes whatever their shares) and the mode-weight error; each
divided by its floor (the mean over 10 further exact sets against the same reference), so 1.0
is exact sampling; mean ± sd over three sampler seeds. NFE is the budget: `heun` runs
`(NFE + 1) // 2` steps.

Schedules: `edm` is the EDM levels (Karras rho = 7, 0.002..80; the default before #17); `ve` the
geometric levels of the `ve` process; "optimized ..S" is `diffusion.schedules.optimized_sigmas`
from sigma_max S (GITS-style dynamic programming over a 100-level Karras grid down to 0.002,
Euler local error against a `dpmpp_3m` teacher on 512 draws, 298 evaluations, once per target;
it also picks the last level), with `fine_scale` 0.01 weighting the errors at sigma by `1 /
sqrt(1 + sigma^2 / 0.01)`; "data prior" starts from `N(mean, cov + sigma_max^2 I)`
(`prior="data"`) instead of `N(0, sigma_max^2 I)`; at sigma_max 80 the two priors give the same
numbers within the seed spread (measured, not shown). """


def grid_main(quick: bool, nfes: tuple[int, ...], out: Path | None, solvers: tuple[str, ...],
              pick: tuple[int, ...] | None) -> None:  # fmt: skip
    start = time.perf_counter()
    n = 2_000 if quick else 10_000
    with torch_threads(1):  # small batches: a second thread only adds contention
        lines, _ = run_grid(n, nfes, solvers, pick)
    text = GRID_TEXT.format(
        date=datetime.date.today().isoformat(),
        minutes=f"{(time.perf_counter() - start) / 60:.1f}",
        machine=machine(),
        n=n,
    )
    emit(text + "\n" + "\n".join(lines) + "\n", out or (None if quick else GRID_RESULTS))


# -- the defaults against the targets (part of the main run) ---------------------------
TARGET_SEEDS = GRID_SEEDS  # sampler seeds for the defaults; reference and floor sets are fixed
DIGITS_SEEDS, DIGITS_N = (0, 1, 2), 1000


def defaults_cells(gm: GaussianMixture, ref: Reference, nfes: tuple[int, ...]
                   ) -> dict[int, list[GridCell]]:  # fmt: skip
    """SW2, within-mode SW2 and mode-weight error of the defaults, one cell per seed."""
    out = {}
    for nfe in nfes:
        out[nfe] = []
        for seed in TARGET_SEEDS:
            x = defaults_run(ExactDenoiser(gm), ref.samples.shape[0], nfe, seed)
            out[nfe].append(GridCell(sw2(x, ref.samples), within_mode_sw(x, ref.samples, gm),
                                     mode_error(x, gm)))  # fmt: skip
    return out


def target_lines(targets: list[Target], refs: dict[str, Reference], nfes: tuple[int, ...]
                 ) -> tuple[list[str], dict]:  # fmt: skip
    """The defaults' three metrics over the floor at every NFE (mean ± sd over
    ``TARGET_SEEDS``), and the issue's targets checked against them."""
    lines = [
        "| target | NFE | SW2 / floor | within-mode SW2 / floor | mode-weight error / floor |",
        "|---|---:|---:|---:|---:|",
    ]
    ratios = {}
    for target in targets:
        ref = refs[target.name]
        floor = grid_floor(target.gm, ref)
        cells = defaults_cells(target.gm, ref, nfes)
        for nfe in nfes:
            r = {m: [getattr(c, m) / getattr(floor, m) for c in cells[nfe]]
                 for m in ("sw", "within", "mode")}  # fmt: skip
            ratios[(target.name, nfe)] = (r, [c.mode for c in cells[nfe]], floor)
            lines.append(f"| {target.name} | {nfe} | " + " | ".join(mean_sd(r[m]) for m in r)
                         + " |")  # fmt: skip
    return lines, ratios


def verdict_lines(ratios: dict, refs: dict[str, Reference], nfes: tuple[int, ...],
                  names: tuple[str, str, str]) -> list[str]:  # fmt: skip
    ring, big, toy = names

    def check(key: tuple[str, int], metric: str, limit: float, what: str) -> str:
        if key not in ratios:
            return f"- {what} at NFE {key[1]}: not run."
        values = ratios[key][0][metric]
        mean = statistics.mean(values)
        word = "**met**" if mean <= limit else "**missed**"
        return f"- {what} at NFE {key[1]}: {mean:.2f} (target <= {limit}): {word}."

    lines = [
        check((big, 10), "sw", 1.3, f"{big}: SW2 / floor"),
        check((ring, 10), "within", 3.5, f"{ring}: within-mode SW2 / floor"),
        check((ring, 20), "within", 1.2, f"{ring}: within-mode SW2 / floor"),
    ]
    floor = refs[toy].floor_mode  # exact sets' mode-weight errors: their spread
    spread = statistics.mean(floor) + 2 * statistics.stdev(floor)
    for nfe in nfes:
        errs = ratios[(toy, nfe)][1]
        word = "**met**" if statistics.mean(errs) <= spread else "**missed**"
        lines.append(
            f"- {toy}: mode-weight error at NFE {nfe}: {statistics.mean(errs):.4f} ± "
            f"{statistics.stdev(errs):.4f} over {len(errs)} seeds; exact sampling's spread "
            f"(mean + 2 sd of {len(floor)} exact sets) {spread:.4f}: {word}."
        )
    return lines


OLD_DEFAULT = {"sampler": "heun", "process": "edm", "prior": "zero"}
DIGITS_CONFIGS = (  # (label, nfe, sample() arguments); moments are added to every row
    ("defaults", 5, {}),
    ("defaults", 10, {}),
    ("defaults", 20, {}),
    ("defaults", 50, {}),
    ("dpmpp_2m, default levels", 10, {"sampler": "dpmpp_2m"}),
    ("dpmpp_2m, ve (the README's advice before)", 10, {"sampler": "dpmpp_2m", "process": "ve"}),
    ("heun, edm, zero prior (the default before)", 10, OLD_DEFAULT),
    ("heun, edm, zero prior (the default before)", 35, OLD_DEFAULT),
)


def digits_lines(run: Path, configs: tuple = DIGITS_CONFIGS) -> list[str]:
    """Frechet distance (the eval command's classifier features, against the test split) of
    ``DIGITS_N`` samples per draw, over ``DIGITS_SEEDS``, for ``DIGITS_CONFIGS``; samples
    clamped to the pixel range as ``scorelab sample`` does."""
    from scorelab.cli.common import load_any, load_run_data, run_record
    from scorelab.cli.eval_cmd import feature_classifier
    from scorelab.metrics import frechet_distance

    record = run_record(run)
    model, record = load_any(run, torch.device("cpu"), record)
    train, held = load_run_data(record), load_run_data(record, heldout=True)
    clf = feature_classifier(train, 0)
    real = clf.features(held.x)
    flat = train.x.reshape(len(train.x), -1).double()
    moments = (flat.mean(0), torch.cov(flat.T))  # what scorelab sample stores for the run
    lines = [
        f"| configuration | NFE (counted) | FD, seeds {', '.join(map(str, DIGITS_SEEDS))} | "
        "mean ± sd |",
        "|---|---:|---|---:|",
    ]
    fds: dict[tuple[str, int], list[float]] = {}
    for label, nfe, kw in configs:
        values, spent = [], 0
        for seed in DIGITS_SEEDS:
            kw2 = dict(kw) if kw.get("prior") == "zero" else {**kw, "prior_moments": moments}
            gen = torch.Generator().manual_seed(seed)
            res = diffusion.sample(model, DIGITS_N, nfe=nfe, progress=False, generator=gen, **kw2)
            spent = res.nfe
            values.append(frechet_distance(clf.features(res.samples.clamp(-1, 1)), real).item())
        fds[(label, nfe)] = values
        print(f"  digits {label} NFE {nfe}: FD {[round(v, 2) for v in values]}")
        lines.append(f"| {label} | {spent} | {', '.join(f'{v:.2f}' for v in values)} | "
                     f"{mean_sd(values)} |")  # fmt: skip
    old_key = ("heun, edm, zero prior (the default before)", 35)
    if ("defaults", 10) not in fds or old_key not in fds:
        return lines
    ours, old = fds[("defaults", 10)], fds[old_key]
    gap = statistics.mean(ours) - statistics.mean(old)
    paired = [a - b for a, b in zip(ours, old, strict=True)]
    word = "**met**" if abs(gap) <= statistics.stdev(old) else "**missed**"
    lines += [
        "",
        f"- Target: FD of the defaults at NFE 10 within the draw-to-draw spread of NFE 35 "
        f"(heun, edm): {statistics.mean(ours):.2f} vs {statistics.mean(old):.2f} ± "
        f"{statistics.stdev(old):.2f}, a gap of {gap:+.2f} (paired by seed: "
        f"{', '.join(f'{d:+.2f}' for d in paired)}): {word}.",
    ]
    return lines


TARGETS_TEXT = """## The defaults against the issue's targets

`diffusion.sample(model, n, nfe=NFE)` with nothing else (the data's moments given, as a run
folder or a known density supplies them): UniPC on `diffusion.default_schedule` from the
data-aware prior. Each metric divided by its exact-sampling floor (mean over 10 exact sets
against the same reference), mean ± sd over sampler seeds {seeds}; within-mode SW2 assigns
points to their most likely component and averages the per-component SW2 with the weights."""

DIGITS_TEXT = """## Digits: a trained model

`{run}` (trained by `scorelab quickstart`: small U-Net, 1500 steps). {n} samples per draw,
seeds {seeds}; Frechet distance of the feature classifier `scorelab eval` trains (seed 0) on
the training split, against the 360 test digits. The samples' size makes FD noisy: the
spread over draws is the yardstick. The peers have no digits rows: on the same levels their
solvers give scorelab's numbers (the "Same algorithm" tables above), so a digits row of theirs
would repeat a scorelab one."""


# -- main ------------------------------------------------------------------------------------
def versions() -> str:
    names = ("diffusers", "k-diffusion", "torchsde", "numpy", "scipy")
    shown = ", ".join(f"{name} {version(name)}" for name in names)
    return (
        f"Python {platform.python_version()}, torch {torch.__version__}, scorelab "
        f"{scorelab.__version__}, {shown}"
    )


def all_specs() -> list[Spec]:
    return [
        *scorelab_specs(),
        *diffusers_specs(load_diffusers()),
        *kdiffusion_specs(load_kdiffusion_sampling()),
    ]


def run_all(n: int, nfes: tuple[int, ...], overhead_n: int, repeats: int) -> Results:
    specs, targets = all_specs(), [ring_2d(), mixture_64d(k=10), toy_2d()]
    refs, tables, rk45 = {}, {}, {}
    for target in targets:
        print(f"{target.name} ({target.description}); SW (true NFE) at NFE {nfes}")
        refs[target.name] = ref = reference(target.gm, n)
        tables[target.name] = run_target(target, ref, specs, nfes)
        rk45[target.name] = rk45_rows(target, ref)
    print(f"overhead at batch {overhead_n:,}")
    runs = overhead(targets[1].gm, overhead_n, 20, repeats)
    return Results(n, nfes, targets, refs, tables, rk45, runs, overhead_n, {})


def defaults_main(nfes: tuple[int, ...], digits: Path | None, out: Path | None) -> None:
    """The defaults' rows alone (targets and, with ``digits``, FD) at ``nfes``: a section to
    add to the report after a change of the defaults, without rerunning the peers."""
    start, load = time.perf_counter(), " ".join(f"{v:.1f}" for v in os.getloadavg())
    targets = [ring_2d(), mixture_64d(k=10), toy_2d()]
    with torch_threads(1):
        refs = {t.name: reference(t.gm, 10_000) for t in targets}
        lines, ratios = target_lines(targets, refs, nfes)
        lines += ["", *verdict_lines(ratios, refs, nfes, tuple(t.name for t in targets))]
        if digits is not None:
            pick = tuple(c for c in DIGITS_CONFIGS if c[0] == "defaults" and c[1] in nfes)
            lines += ["", *digits_lines(digits, pick)]
    minutes = (time.perf_counter() - start) / 60
    loads = f"load {load} at start, {' '.join(f'{v:.1f}' for v in os.getloadavg())} at the end"
    head = [
        f"Defaults only, NFE {', '.join(map(str, nfes))}: {minutes:.1f} min, {loads}; "
        f"seeds {', '.join(map(str, TARGET_SEEDS))}, 10,000 samples.",
        "",
    ]
    emit("\n".join(head + lines) + "\n", out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 samples, NFE 10/20, print")
    parser.add_argument("--out", type=Path, help=f"report file (default: {RESULTS} unless --quick)")
    parser.add_argument("--grid", action="store_true", help=f"solver x schedule: {GRID_RESULTS}")
    parser.add_argument("--nfe", type=int, nargs="+", default=[10], help="--grid budgets")
    parser.add_argument("--solvers", nargs="+", default=list(GRID_SOLVERS), help="--grid rows")
    parser.add_argument("--schedules", type=int, nargs="+", help="--grid columns (numbers)")
    parser.add_argument(
        "--digits",
        type=Path,
        default=None,
        metavar="RUN",
        help="a digits run folder (train/quickstart) for the FD rows",
    )
    parser.add_argument(
        "--defaults-only",
        action="store_true",
        help="only the defaults' target (and --digits) rows at --nfe, to --out",
    )
    args = parser.parse_args()
    if args.defaults_only:
        defaults_main(tuple(args.nfe), args.digits, args.out)
        return
    if args.grid:
        pick = None if args.schedules is None else tuple(args.schedules)
        grid_main(args.quick, tuple(args.nfe), args.out, tuple(args.solvers), pick)
        return
    n, nfes, repeats = (2_000, (10, 20), 1) if args.quick else (10_000, (5, 10, 20, 50), 5)
    start, load = time.perf_counter(), " ".join(f"{v:.1f}" for v in os.getloadavg())
    with torch_threads(1):  # small batches, a shared machine: one thread
        res = run_all(n, nfes, overhead_n=n, repeats=repeats)
        print("the defaults against the targets")
        lines, ratios = target_lines(res.targets, res.refs, nfes)
        names = tuple(t.name for t in res.targets)
        res.targets_text = [
            TARGETS_TEXT.format(seeds=", ".join(map(str, TARGET_SEEDS))), "", *lines, "",
            *verdict_lines(ratios, res.refs, nfes, names),
        ]  # fmt: skip
        if args.digits is not None:
            print(f"digits: {args.digits}")
            res.digits_text = [
                DIGITS_TEXT.format(run=args.digits, n=DIGITS_N,
                                   seeds=", ".join(map(str, DIGITS_SEEDS))),
                "", *digits_lines(args.digits),
            ]  # fmt: skip
        else:
            res.digits_text = ["## Digits: a trained model", "", "Skipped: pass --digits RUN."]
    res.meta = {
        "args": (" --quick" if args.quick else "")
        + (f" --digits {args.digits}" if args.digits else ""),
        "date": datetime.date.today().isoformat(),
        "minutes": f"{(time.perf_counter() - start) / 60:.1f}",
        "machine": machine(),
        "threads": "1",
        "load": load,
        "load_end": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        "versions": versions(),
    }
    text = report(res)
    out = args.out or (None if args.quick else RESULTS)
    emit(text + "\n" if out is not None else text, out)


if __name__ == "__main__":
    main()
