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
from scorelab.diffusion.processes import PROCESSES, Process, make_process
from scorelab.diffusion.samplers import SAMPLERS
from scorelab.diffusion.schedules import check_sigmas
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


def steps_for_nfe(sampler: str, nfe: int, params: dict) -> int:
    """The number of noise levels that spends ``nfe`` denoiser evaluations per sample."""
    if sampler == "heun":  # 2 per step, the last step 1
        return max(1, (nfe + 1) // 2)
    if sampler == "pc":  # predictor + corrector_steps per level
        return max(1, nfe // (1 + params.get("corrector_steps", 1)))
    if sampler == "rk45":  # adaptive: only the end points sigma_max, sigma_min matter
        return 2
    if sampler == "annealed_langevin":  # levels x steps per level (+1 final Tweedie step)
        return max(1, nfe // params.get("steps_per_level", 100))
    return nfe


def _bind(base: Callable, cond: Tensor | None, start: int, m: int, device: torch.device):
    """The denoiser for one batch, with that batch's labels bound."""
    if cond is None:
        return base
    labels = cond[start : start + m].to(device)
    bound = lambda x, sigma: base(x, sigma, labels)  # noqa: E731
    bound.evals_per_call = getattr(base, "evals_per_call", 1)
    return bound


PRIORS = ("zero", "data")


def _starts(prior: str, prior_moments: tuple | None, model: object, shape: tuple[int, ...],
            x_init: Tensor | None, n: int) -> DataPrior | Tensor | None:  # fmt: skip
    """Validate where sampling starts: user points ``x_init`` ``[n, *shape]``, the data-aware
    prior (moments given or the model's), or ``None`` for the zero-mean prior."""
    if prior not in PRIORS:
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
    return DataPrior.from_model(model, dim)


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
    sampler: str = "heun",
    nfe: int = 35,
    process: str | Process = "edm",
    shape: tuple[int, ...] | None = None,
    batch_size: int = 10_000,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    progress: bool | None = None,
    cond: Tensor | int | None = None,
    sigmas: Tensor | list[float] | None = None,
    x_init: Tensor | None = None,
    prior: str = "zero",
    prior_moments: tuple[object, object] | None = None,
    **params: object,
) -> SampleResult:
    """Draw ``n`` samples from a model exposed as a denoiser (a network or a known density).

    ``process`` gives the noise levels and the prior (a name from ``PROCESSES`` or a
    ``Process``); ``nfe`` sets the number of levels for ``sampler`` (see ``steps_for_nfe``;
    "rk45" chooses its own steps from ``rtol``/``atol`` and "langevin" runs ``nfe`` steps at
    the smallest sigma of the process). Large ``n`` is streamed in batches of ``batch_size``.
    ``cond`` (an int, or int64 ``[n]``) is passed to the model as ``D(x, sigma, cond)``:
    class labels for conditional models and guidance wrappers. ``device`` defaults to the
    model's (``model_device``: where its weights live), else the CPU; the result is on the
    CPU. Extra keyword ``params`` go to the sampler.

    ``sigmas`` (a decreasing 1-D tensor ending in 0, ``check_sigmas``) replaces the process's
    levels, and ``nfe`` is then not used: the sampler spends what those levels cost. Sampling
    starts from ``x_init`` (``[n, *shape]``, points at the first noise level) if given, else
    from the prior at the first level ``sigma``: ``prior="zero"`` is the process's
    ``N(0, prior_std^2 I)``; ``prior="data"`` is ``N(mean, cov + sigma^2 I)``, the exact first
    two moments of the smoothed data (``DataPrior``), with ``prior_moments=(mean, cov)`` or
    the model's own ``.mean`` and ``.cov`` (a known density).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of samples); got {n!r}")
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be a positive int (denoiser evaluations); got {nfe!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if isinstance(process, str):
        if process not in PROCESSES:
            raise ValueError(f"unknown process {process!r}; choose one of {', '.join(PROCESSES)}")
        process = make_process(process)
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

    if sigmas is not None:
        sigmas = check_sigmas(sigmas, sampler, dtype).to(device)
        sigma_start = float(sigmas[0])
    elif sampler == "langevin":
        sigmas = torch.tensor([process.sigma_min], dtype=dtype, device=device)
        sigma_start = process.sigma_max  # from the broad prior, run at sigma_min
    else:
        sigmas = process.sigmas(steps_for_nfe(sampler, nfe, params), dtype).to(device)
        sigma_start = process.sigma_max
    if sampler == "langevin":
        params.setdefault("steps", nfe)
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
