"""The MCMC runner: many chains, warm-up adaptation, sampling, divergence checks, diagnostics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from scorelab._utils import check_finite, rand
from scorelab.densities.base import Density, from_log_prob
from scorelab.errors import DivergenceError
from scorelab.mcmc import diagnostics
from scorelab.mcmc.adaptation import DualAveraging, MassAdaptation
from scorelab.mcmc.kernels import Info, Kernel, State, get_kernel, init, select


@dataclass(frozen=True)
class MCMCResult:
    """Draws and what it took to get them."""

    samples: Tensor  # [chains, draws, dim], after warm-up (and thinning)
    accept_rate: Tensor  # [chains] fraction of accepted proposals after warm-up
    step_size: float  # the step size used after warm-up
    grad_evals: int  # score evaluations per chain, warm-up and step-size search included
    divergences: Tensor  # [chains] divergent transitions after warm-up
    kernel: str
    inv_mass: Tensor | None  # [dim] adapted diagonal inverse mass (HMC), else None
    wall_time: float  # seconds, warm-up included

    def summary(self, names: list[str] | None = None) -> diagnostics.Summary:
        """Mean, sd, quantiles, MCSE, bulk/tail ESS and R-hat per coordinate."""
        return diagnostics.summary(self.samples, names=names)

    def report(self, names: list[str] | None = None) -> str:
        """A header line (kernel, step size, acceptance, divergences) and the summary table."""
        chains, draws, _ = self.samples.shape
        div = int(self.divergences.sum())
        head = (
            f"{self.kernel}: {chains} chains x {draws} draws, step size {self.step_size:.4g}, "
            f"acceptance {self.accept_rate.mean().item():.3f}, {self.grad_evals} gradient "
            f"evaluations per chain, {self.wall_time:.2f} s"
        )
        if div:
            bad = ", ".join(str(i) for i in self.divergences.nonzero()[:, 0].tolist()[:10])
            head += f"\nWARNING: {div} divergent transitions (chains {bad}): lower the step size"
        return f"{head}\n{self.summary(names)}"


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


def _find_step_size(target, kernel, state, h, generator, params) -> tuple[float, int]:
    """Double or halve ``h`` until the mean acceptance probability crosses the target
    (Hoffman & Gelman 2014, Algorithm 4, on the mean over chains). Returns (h, grad evals)."""
    evals, direction = 0, 0
    for _ in range(40):
        _, info = kernel.step(target, state, h, generator, **params)
        evals += info.grad_evals
        a = torch.nan_to_num(info.accept_prob, nan=0.0).mean().item()
        d = 1 if a > kernel.target_accept else -1
        if direction and d != direction:
            break
        direction, h = d, h * 2.0**d
    return h, evals


def sample(
    target: Density | Callable[[Tensor], Tensor],
    kernel: str = "mala",
    *,
    chains: int = 4,
    steps: int = 1000,
    warmup: int = 500,
    step_size: float | None = None,
    init: Tensor | None = None,
    dim: int | None = None,
    n_leapfrog: int = 10,
    adapt_mass: bool | None = None,
    step_schedule: Callable[[int, float], float] | None = None,
    thin: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
) -> MCMCResult:
    """Run ``chains`` chains of ``kernel`` on ``target``: ``warmup`` adapting, then ``steps``.

    Args:
        target: a ``Density`` or a function ``x [chains, dim] -> log p(x)`` (then give ``dim``
            or ``init``); ``Z`` is never needed.
        kernel: "rwm", "random_walk", "ula", "mala", "hmc" or "sgld".
        step_size: fixed step size; ``None`` adapts it in warm-up by dual averaging to the
            kernel's target acceptance (RWM 0.234, MALA 0.574, HMC 0.8; ULA uses the MALA
            acceptance of its own move, a documented stand-in). "random_walk" and "sgld" need it.
        adapt_mass: adapt HMC's diagonal inverse mass matrix (Stan's windows); default on for HMC.
        step_schedule: ``(iteration, step_size) -> step size`` for this iteration; SGLD's
            default is ``h (1 + t / 100)^-0.55`` (Welling & Teh 2011).
        init: ``[chains, dim]`` or ``[dim]`` starting points; default uniform on [-2, 2].
    """
    k: Kernel = get_kernel(kernel)
    chains, steps = _check_count(chains, "chains", 1), _check_count(steps, "steps", 1)
    warmup, thin = _check_count(warmup, "warmup", 0), _check_count(thin, "thin", 1)
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
    if step_size is not None and not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be finite and > 0; got {step_size}")
    if step_size is None and k.target_accept is None:
        raise ValueError(f"kernel {kernel!r} has no acceptance rate to tune; pass step_size=")
    if kernel == "sgld" and step_schedule is None:
        step_schedule = lambda t, h: h * (1 + t / 100) ** -0.55  # noqa: E731
    device = torch.device(device or (init.device if isinstance(init, Tensor) else "cpu"))
    params = {"n_leapfrog": _check_count(n_leapfrog, "n_leapfrog", 1)} if kernel == "hmc" else {}
    adapt_mass = kernel == "hmc" if adapt_mass is None else adapt_mass
    if adapt_mass and kernel != "hmc":
        raise ValueError("adapt_mass applies to kernel 'hmc' only")

    start = time.perf_counter()
    x0 = _initial_points(target, init, chains, dtype, device, generator)
    with torch.no_grad():
        state = _init_state(target, k, x0)
    grad_evals = 0
    adapt = None
    if step_size is None:
        with torch.no_grad():
            step_size, grad_evals = _find_step_size(target, k, state, 0.1, generator, params)
        adapt = DualAveraging(step_size, k.target_accept) if warmup else None
    # ULA is tuned with MALA moves at the same step size: adjusted moves cannot run away while
    # the step size is still too large, and the tuned step keeps ULA's bias small.
    warm_kernel = get_kernel("mala") if kernel == "ula" and adapt is not None else k
    mass = MassAdaptation(warmup) if adapt_mass else None
    inv_mass = torch.ones(target.dim, dtype=dtype, device=device) if adapt_mass else None

    samples = torch.empty(chains, steps // thin, target.dim, dtype=dtype, device=device)
    accepted = torch.zeros(chains, dtype=dtype, device=device)
    divergences = torch.zeros(chains, dtype=torch.long, device=device)
    bar = tqdm(
        total=warmup + steps, desc=kernel, disable=None if progress is None else not progress
    )
    for t in range(warmup + steps):
        warm = t < warmup
        if adapt is not None and t == warmup:
            step_size = adapt.final_step_size  # warm-up over: the averaged iterate
        h = adapt.step_size if adapt is not None and warm else step_size
        h = step_schedule(t, h) if step_schedule else h
        if inv_mass is not None:
            params["inv_mass"] = inv_mass
        with torch.no_grad():
            used = warm_kernel if warm else k
            new, info = used.step(target, state, h, generator, **params)
        grad_evals += info.grad_evals
        state = _guard(used, state, new, info, t, warmup, h)
        if warm:
            if adapt is not None:
                adapt.update(torch.nan_to_num(info.accept_prob, nan=0.0).mean().item())
            estimate = mass.observe(t, state.x) if mass is not None else None
            if estimate is not None:
                inv_mass = estimate
                if adapt is not None:  # new metric: restart step-size adaptation from here
                    adapt = DualAveraging(adapt.step_size, k.target_accept)
        else:
            i = t - warmup
            accepted += info.accepted.to(dtype)
            divergences += info.diverged.long()
            if (i + 1) % thin == 0:
                samples[:, i // thin] = state.x
        bar.update(1)
        if t % 50 == 0:
            bar.set_postfix(step=f"{h:.3g}", accept=f"{info.accept_prob.mean().item():.2f}")
    bar.close()
    return MCMCResult(
        samples=samples,
        accept_rate=accepted / steps,
        step_size=float(step_size),
        grad_evals=grad_evals,
        divergences=divergences,
        kernel=kernel,
        inv_mass=inv_mass,
        wall_time=time.perf_counter() - start,
    )


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


def _guard(k: Kernel, old: State, new: State, info: Info, t: int, warmup: int, h: float) -> State:
    """Divergence policy: MH kernels already rejected (and counted) such moves; for unadjusted
    kernels a diverged chain is set back during warm-up and is an error after it."""
    if k.adjusted or not info.diverged.any():
        return new
    bad = info.diverged
    if t >= warmup:
        raise DivergenceError(
            f"{k.name} diverged: {int(bad.sum())} of {bad.numel()} chains reached NaN/inf at "
            f"sampling iteration {t - warmup} with step_size {h:.4g}; lower the step size "
            "(a Langevin step must stay below about 2 / L, L the largest curvature of -log p)"
        )
    return State(
        select(bad, old.x, new.x),
        select(bad, old.log_prob, new.log_prob),
        select(bad, old.score, new.score),
    )
