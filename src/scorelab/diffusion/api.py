"""The front door: ``sample(model, n, sampler=..., nfe=..., process=...)``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scorelab._utils import randn
from scorelab.diffusion.priors import DataPrior
from scorelab.diffusion.processes import Process, make_process
from scorelab.diffusion.samplers import SAMPLERS
from scorelab.diffusion.schedules import check_sigmas, default_schedule
from scorelab.progress import progress as progress_counter


class CountingDenoiser:
    """Wraps a denoiser and counts its evaluations (per sample: one call on a batch is one)."""

    def __init__(self, denoiser: Callable[[Tensor, Tensor], Tensor]):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        self.calls += getattr(self.denoiser, "evals_per_call", 1)
        return self.denoiser(x, sigma)


def as_denoiser(model: object) -> Callable[[Tensor, Tensor], Tensor]:
    """A model exposed as ``D(x, sigma)``: a known density's exact ``denoise`` or any callable."""
    if hasattr(model, "denoise") and callable(model.denoise):
        return model.denoise
    if callable(model):
        return model
    raise ValueError(
        f"model must be a denoiser D(x, sigma) or have a .denoise method (such as "
        f"scorelab.densities.GaussianMixture); got {type(model).__name__}"
    )


def model_device(model: object) -> torch.device | None:
    """Where a model's weights live: its first parameter or buffer, else a ``device``
    attribute, looking through wrappers (guidance, inpainting) via ``.model``; else ``None``."""
    for _ in range(16):  # wrappers nest a few deep at most
        if isinstance(model, torch.nn.Module):
            tensor = next(model.parameters(), None)
            tensor = next(model.buffers(), None) if tensor is None else tensor
            if tensor is not None:
                return tensor.device
        dev = getattr(model, "device", None)
        if isinstance(dev, torch.device):
            return dev
        model = getattr(model, "model", None)
        if model is None:
            return None
    return None


def event_shape(model: object, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """The shape of one sample: ``shape`` if given, else the model's ``event_shape`` or ``dim``."""
    if shape is not None:
        return tuple(shape)
    if hasattr(model, "event_shape"):
        return tuple(model.event_shape)
    if hasattr(model, "dim"):
        return (int(model.dim),)
    raise ValueError("cannot tell the shape of one sample: pass shape=(...)")


DEFAULT_SAMPLER = "unipc"  # with default_schedule and the data prior: the benchmark's best
DEFAULT_NFE = 20
# the samplers that step through default_schedule when no process is named (measured best for
# them); the others keep the EDM levels (Karras et al. 2022), as before the defaults changed
DEFAULT_SCHEDULE_SAMPLERS = ("unipc", "dpmpp_2m", "dpmpp_3m", "ipndm")
ANNEALED_LEVELS = 10  # Song & Ermon's L when annealed_langevin chooses its own


def _spend(nfe: int, params: dict) -> int:
    """The evaluations a Langevin sampler may spend stepping: ``nfe`` less the final
    Tweedie step when there is one."""
    return nfe - (1 if params.get("final_denoise", False) else 0)


def annealed_budget(nfe: int, params: dict, levels: int | None = None) -> tuple[int, int]:
    """``(levels, steps_per_level)`` of ``annealed_langevin`` that spend at most ``nfe``
    evaluations, ``levels x steps_per_level + 1`` (the final Tweedie step). With
    ``steps_per_level`` in ``params``: as many levels as fit (or the ``levels`` given, explicit
    sigmas); without: the most steps a level that let ``ANNEALED_LEVELS`` (or ``levels``)
    levels fit. A budget that cannot pay one level and the last step is refused."""
    spend = nfe - (1 if params.get("final_denoise", True) else 0)
    per = params.get("steps_per_level")
    if per is not None and (not isinstance(per, int) or per < 1):
        raise ValueError(f"steps_per_level must be a positive int; got {per!r}")
    if levels is None:
        levels = spend // per if per is not None else min(ANNEALED_LEVELS, spend)
    per = per if per is not None else (spend // levels if levels > 0 else 0)
    if levels < 1 or per < 1 or levels * per > spend:
        need = max(levels, 1) * (per or 1) + nfe - spend
        raise ValueError(
            f"annealed_langevin: nfe = {nfe} cannot pay for {max(levels, 1)} level(s) x "
            f"{per or 1} step(s) plus the final denoising step (needs nfe >= {need}); raise nfe "
            "or lower steps_per_level"
        )
    return levels, per


def steps_for_nfe(sampler: str, nfe: int, params: dict) -> int:
    """The number of noise levels that spends at most ``nfe`` denoiser evaluations per sample
    (``ValueError`` when even one level costs more)."""
    if sampler == "heun":  # 2 per step, the last step 1
        return max(1, (nfe + 1) // 2)
    if sampler == "pc":  # predictor + corrector_steps per level
        per = 1 + params.get("corrector_steps", 1)
        if nfe < per:
            raise ValueError(f"pc spends 1 + corrector_steps = {per} evaluations a level; "
                             f"nfe = {nfe} cannot pay for one: raise nfe")  # fmt: skip
        return nfe // per
    if sampler == "rk45":  # adaptive: only the end points sigma_max, sigma_min matter
        return 2
    if sampler == "annealed_langevin":
        return annealed_budget(nfe, params)[0]
    return nfe


def rk45_tolerance(nfe: int) -> float:
    """The ``rtol = atol`` of ``rk45`` for a budget: measured on the exact mixtures
    (``benchmarks/results/samplers.md``), 1e-2 takes 51-57 evaluations, 1e-3 63-69, 1e-4 87."""
    return 1e-4 if nfe >= 120 else 1e-3 if nfe >= 90 else 1e-2


def _bind(base: Callable, cond: Tensor | None, start: int, m: int, device: torch.device):
    """The denoiser for one batch, with that batch's labels bound."""
    if cond is None:
        return base
    labels = cond[start : start + m].to(device)
    bound = lambda x, sigma: base(x, sigma, labels)  # noqa: E731
    bound.evals_per_call = getattr(base, "evals_per_call", 1)
    return bound


PRIORS = ("zero", "data")


def _starts(prior: str | None, prior_moments: tuple | None, model: object,
            shape: tuple[int, ...], x_init: Tensor | None, n: int
            ) -> DataPrior | Tensor | None:  # fmt: skip
    """Validate where sampling starts: user points ``x_init`` ``[n, *shape]``, the data-aware
    prior (moments given or the model's), or ``None`` for the zero-mean prior. ``prior=None``
    is ``"data"`` when the moments are known, else ``"zero"``."""
    if prior is not None and prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIORS)}")
    if x_init is not None:
        if not isinstance(x_init, Tensor) or tuple(x_init.shape) != (n, *shape):
            got = tuple(x_init.shape) if isinstance(x_init, Tensor) else type(x_init).__name__
            raise ValueError(f"x_init must be a tensor of shape {(n, *shape)}; got {got}")
        return x_init
    if prior == "zero":
        if prior_moments is not None:
            raise ValueError("prior_moments are used with prior='data' only")
        return None
    dim = math.prod(shape)
    if prior_moments is not None:
        return DataPrior.from_moments(*prior_moments, dim=dim)
    if prior is None:
        return DataPrior.known(model, dim)
    return DataPrior.from_model(model, dim)


def _data_variance(start_from: object, model: object, shape: tuple[int, ...]) -> float:
    """The data's mean per-coordinate variance for ``default_schedule``: from the prior's
    moments, else a known density's, else 1 (data normalized to unit scale)."""
    moments = start_from
    if not isinstance(moments, DataPrior):
        moments = DataPrior.known(model, math.prod(shape))
    return moments.variance() if moments is not None and moments.variance() > 0 else 1.0


@dataclass(frozen=True)
class SampleResult:
    """Samples and what they cost."""

    samples: Tensor  # [n, *event_shape], on the CPU
    nfe: int  # denoiser evaluations actually spent per sample
    sigmas: Tensor  # the noise levels used
    sampler: str
    wall_time: float


def sample(
    model: object,
    n: int,
    *,
    sampler: str = DEFAULT_SAMPLER,
    nfe: int = DEFAULT_NFE,
    process: str | Process | None = None,
    shape: tuple[int, ...] | None = None,
    batch_size: int = 10_000,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    cond: Tensor | int | None = None,
    sigmas: Tensor | list[float] | None = None,
    x_init: Tensor | None = None,
    prior: str | None = None,
    prior_moments: tuple[object, object] | None = None,
    **params: object,
) -> SampleResult:
    """Draw ``n`` samples from a model exposed as a denoiser (a network or a known density),
    spending at most ``nfe`` denoiser evaluations per sample.

    The defaults are the best configuration of ``benchmarks/samplers.py`` at every budget:
    UniPC (``DEFAULT_SAMPLER``) on ``default_schedule`` (from sigma_max 80, or the model's own
    ``sigma_max``, levels placed by the data's scale: few where the flow is nearly linear,
    geometric below), from the data-aware prior when the data's moments are known. The
    multistep solvers (``DEFAULT_SCHEDULE_SAMPLERS``) use those levels too; the other samplers
    step through the EDM levels. ``process`` (a name from ``PROCESSES`` or a ``Process``)
    replaces the levels with the process's own (``Process.sigmas``) and the zero-mean prior's
    std with its ``prior_std``. ``nfe`` is the most evaluations a sample may cost and sets the
    number of levels for ``sampler`` (``steps_for_nfe``); "rk45" picks its tolerances from it
    (``rk45_tolerance``) and stops with an error where it would spend more, "langevin" runs
    ``nfe`` steps at the smallest sigma, "annealed_langevin" about 10 levels
    (``annealed_budget``); a budget a sampler cannot keep is refused. Large ``n`` is streamed
    in batches of ``batch_size``. ``cond`` (an int, or int64 ``[n]``) is passed to the model
    as ``D(x, sigma, cond)``: class labels for conditional models and guidance wrappers.
    ``device`` defaults to the model's (``model_device``: where its weights live), else the
    CPU; the result is on the CPU. Extra keyword ``params`` go to the sampler.

    ``sigmas`` (a decreasing 1-D tensor ending in 0, ``check_sigmas``) replaces the levels,
    and ``nfe`` then only bounds the Langevin samplers' steps: the sampler spends what those
    levels cost. Sampling starts from ``x_init`` (``[n, *shape]``, points at the first noise
    level) if given, else from the prior at the first level ``sigma``: ``prior="zero"`` is
    ``N(0, prior_std^2 I)``; ``prior="data"`` is ``N(mean, cov + sigma^2 I)``, the exact
    first two moments of the smoothed data (``DataPrior``), with ``prior_moments=(mean,
    cov)`` or the model's own ``.mean`` and ``.cov`` (a known density); ``prior=None``
    (default) is "data" when the moments are known, else "zero".
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of samples); got {n!r}")
    if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be a positive int (denoiser evaluations); got {nfe!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    default_levels = process is None and sampler in DEFAULT_SCHEDULE_SAMPLERS
    if isinstance(process, str):
        process = make_process(process)  # an unknown name: ValueError listing PROCESSES
    if process is None:  # the default levels, up to a model's own sigma_max if it has one
        top = getattr(model, "sigma_max", None)
        top = float(top) if isinstance(top, (int, float)) and top > 1.0 else None
        process = make_process("edm") if top is None else make_process("edm", sigma_max=top)
    base = as_denoiser(model)
    if shape is None and isinstance(x_init, Tensor) and not hasattr(model, "event_shape"):
        shape = tuple(x_init.shape[1:])
    shape = event_shape(model, shape)
    start_from = _starts(prior, prior_moments, model, shape, x_init, n)
    if cond is not None:
        cond = torch.as_tensor(cond, dtype=torch.long).expand(n) if isinstance(cond, int) else cond
        if cond.shape != (n,):
            raise ValueError(f"cond must be an int or an int64 tensor of shape [{n}]")
    device = torch.device(device) if device is not None else model_device(model)
    device = device if device is not None else torch.device("cpu")

    params = dict(params)
    if sigmas is not None:
        sigmas = check_sigmas(sigmas, sampler, dtype)
        sigma_start = float(sigmas[0])  # on the CPU (a meta device holds no values)
        if sampler == "annealed_langevin":
            params["steps_per_level"] = annealed_budget(nfe, params, int((sigmas > 0).sum()))[1]
        sigmas = sigmas.to(device)
    elif sampler == "langevin":
        sigmas = torch.tensor([process.sigma_min], dtype=dtype, device=device)
        sigma_start = process.sigma_max  # from the broad prior, run at sigma_min
    else:
        if sampler == "annealed_langevin":
            params["steps_per_level"] = annealed_budget(nfe, params)[1]
        steps = steps_for_nfe(sampler, nfe, params)
        if default_levels:
            variance = _data_variance(start_from, model, shape)
            levels = default_schedule(steps, sigma_max=process.sigma_max, dim=math.prod(shape),
                                      variance=variance)  # fmt: skip
        else:
            levels = process.sigmas(steps, dtype)
        sigma_start = float(levels[0])
        sigmas = levels.to(dtype=dtype, device=device)
    if sampler == "langevin":
        steps = params.setdefault("steps", _spend(nfe, params))
        if not isinstance(steps, int) or steps < 1 or steps > _spend(nfe, params):
            raise ValueError(f"langevin: steps = {steps!r} (plus the final denoising step if "
                             f"any) must be a positive int within nfe = {nfe}")  # fmt: skip
    if sampler == "rk45":
        params.setdefault("rtol", rk45_tolerance(nfe))
        params.setdefault("atol", params["rtol"])
        params.setdefault("max_nfe", nfe)
    # the zero-mean prior's std at sigma_start (VP's prior_std adds the unit data variance)
    prior_std = math.sqrt(sigma_start**2 + process.prior_std() ** 2 - process.sigma_max**2)
    fn = SAMPLERS[sampler]
    batches = math.ceil(n / batch_size)
    out, start, per_batch = [], time.perf_counter(), 0
    with progress_counter(batches, sampler, unit="batch", show=progress) as bar:
        for b in range(batches):
            m = min(batch_size, n - b * batch_size)
            if isinstance(start_from, Tensor):
                lo = b * batch_size
                x = start_from[lo : lo + m].to(dtype=dtype, device=device)
            elif isinstance(start_from, DataPrior):
                x = start_from.sample(m, shape, sigma_start, generator, dtype, device)
            else:
                x = prior_std * randn((m, *shape), generator, dtype, device)
            denoiser = CountingDenoiser(_bind(base, cond, b * batch_size, m, device))
            x = fn(denoiser, x, sigmas, generator=generator, **params)
            per_batch = denoiser.calls
            out.append(x.cpu())
            bar.update(1)
    return SampleResult(
        samples=torch.cat(out),
        nfe=per_batch,
        sigmas=sigmas.cpu(),
        sampler=sampler,
        wall_time=time.perf_counter() - start,
    )
