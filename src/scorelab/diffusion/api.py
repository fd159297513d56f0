"""The front door: ``sample(model, n, sampler=..., nfe=..., process=...)``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from scorelab._utils import randn
from scorelab.diffusion.processes import PROCESSES, Process, make_process
from scorelab.diffusion.samplers import SAMPLERS


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
    **params: object,
) -> SampleResult:
    """Draw ``n`` samples from a model exposed as a denoiser (a network or a known density).

    ``process`` gives the noise levels and the prior (a name from ``PROCESSES`` or a
    ``Process``); ``nfe`` sets the number of levels for ``sampler`` (see ``steps_for_nfe``;
    "rk45" chooses its own steps from ``rtol``/``atol`` and "langevin" runs ``nfe`` steps at
    the smallest sigma of the process). Large ``n`` is streamed in batches of ``batch_size``.
    ``cond`` (an int, or int64 ``[n]``) is passed to the model as ``D(x, sigma, cond)``:
    class labels for conditional models and guidance wrappers. Extra keyword ``params`` go to
    the sampler.
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
    shape = event_shape(model, shape)
    if cond is not None:
        cond = torch.as_tensor(cond, dtype=torch.long).expand(n) if isinstance(cond, int) else cond
        if cond.shape != (n,):
            raise ValueError(f"cond must be an int or an int64 tensor of shape [{n}]")
    device = torch.device(device or "cpu")

    if sampler == "langevin":
        sigmas = torch.tensor([process.sigma_min], dtype=dtype, device=device)
        params.setdefault("steps", nfe)
    else:
        sigmas = process.sigmas(steps_for_nfe(sampler, nfe, params), dtype).to(device)
    fn = SAMPLERS[sampler]
    batches = math.ceil(n / batch_size)
    out, start, per_batch = [], time.perf_counter(), 0
    with tqdm(
        total=batches, desc=sampler, disable=None if progress is None else not progress
    ) as bar:
        for b in range(batches):
            m = min(batch_size, n - b * batch_size)
            prior_std = process.prior_std()
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
