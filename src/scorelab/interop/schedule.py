"""Discrete VP schedules of diffusers' schedulers, in scorelab's sigma-space.

A discrete VP (DDPM) schedule with ``alpha_bar_t = prod_{i<=t} (1 - beta_i)`` at integer
timesteps ``t = 0 .. T-1`` is, in sigma-space (Karras et al. 2022, Table 1),

    x = x_t / sqrt(alpha_bar_t),    sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t),

so ``x_t = x / sqrt(1 + sigma^2)``. Between the integer timesteps ``log sigma`` is interpolated
linearly (k-diffusion's ``DiscreteSchedule``): a sigma maps to a fractional timestep and back.
This module needs no diffusers; it only reads the keys of a scheduler config.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
# diffusers' VP schedulers: the config keys above describe their schedule
_VE_OR_FLOW = ("ScoreSdeVeScheduler", "KarrasVeScheduler", "FlowMatchEulerDiscreteScheduler",
               "FlowMatchHeunDiscreteScheduler", "CMStochasticIterativeScheduler")  # fmt: skip


def _cosine_betas(steps: int, max_beta: float = 0.999) -> Tensor:
    """``beta_i = min(1 - f((i+1)/T) / f(i/T), max_beta)``, ``f(t) = cos^2((t + 0.008) / 1.008
    pi / 2)`` (Nichol & Dhariwal 2021, eq. 17; diffusers' "squaredcos_cap_v2")."""

    def f(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - f((i + 1) / steps) / f(i / steps), max_beta) for i in range(steps)]
    return torch.tensor(betas, dtype=torch.float32)


def _rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Rescale betas so that ``alpha_bar_T = 0`` (Lin et al. 2024, Algorithm 1)."""
    ab_sqrt = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = ab_sqrt[0].clone(), ab_sqrt[-1].clone()
    ab_sqrt = (ab_sqrt - last) * first / (first - last)
    ab = ab_sqrt**2
    alphas = torch.cat([ab[0:1], ab[1:] / ab[:-1]])
    return 1 - alphas


def alphas_cumprod_from_config(config: Mapping[str, Any]) -> Tensor:
    """``alpha_bar_t`` (float64 ``[T]``) from a diffusers scheduler config, computed as diffusers
    does (betas and their cumulative product in float32), so the wrapped model sees exactly the
    levels it was trained on: ``trained_betas`` if given, else ``beta_schedule`` over
    ``num_train_timesteps`` from ``beta_start`` to ``beta_end``; a config may also carry
    ``alphas_cumprod`` itself. With ``rescale_betas_zero_snr`` the last level is clamped at
    ``2^-24`` as diffusers' samplers do (sigma would be infinite)."""
    if config.get("alphas_cumprod") is not None:
        ab = torch.as_tensor(config["alphas_cumprod"], dtype=torch.float64)
    else:
        steps = int(config.get("num_train_timesteps", 1000))
        start, end = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
        schedule = config.get("beta_schedule", "linear")
        if config.get("trained_betas") is not None:
            betas = torch.as_tensor(config["trained_betas"], dtype=torch.float32)
        elif schedule == "linear":
            betas = torch.linspace(start, end, steps, dtype=torch.float32)
        elif schedule == "scaled_linear":
            betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float32) ** 2
        elif schedule == "squaredcos_cap_v2":
            betas = _cosine_betas(steps)
        elif schedule == "sigmoid":
            betas = torch.sigmoid(torch.linspace(-6, 6, steps)) * (end - start) + start
        else:
            raise ValueError(
                f"unknown beta_schedule {schedule!r} in the scheduler config; scorelab reads "
                f"{', '.join(BETA_SCHEDULES)}, trained_betas or alphas_cumprod"
            )
        if config.get("rescale_betas_zero_snr", False):
            betas = _rescale_zero_terminal_snr(betas)
        ab = torch.cumprod(1.0 - betas, dim=0).to(torch.float64)
        if config.get("rescale_betas_zero_snr", False):
            ab[-1] = 2.0**-24
    if ab.ndim != 1 or len(ab) < 2 or not ((ab > 0) & (ab <= 1)).all():
        raise ValueError(
            "alphas_cumprod must be a 1-D sequence of at least 2 values in (0, 1]; check the "
            "scheduler config's betas"
        )
    if (ab[1:] >= ab[:-1]).any():
        raise ValueError("alphas_cumprod must decrease strictly with the timestep")
    return ab


def read_scheduler_config(scheduler: object) -> dict[str, Any]:
    """A scheduler's config as a dict: from a diffusers scheduler object (its ``config``, and its
    own ``alphas_cumprod``), a dict, a ``scheduler_config.json`` file or a folder holding one."""
    if isinstance(scheduler, (str, Path)):
        path = Path(scheduler)
        path = path / "scheduler_config.json" if path.is_dir() else path
        if not path.is_file():
            raise ValueError(
                f"no scheduler config at {path}: pass a folder holding scheduler_config.json "
                "(a pipeline's scheduler/ folder), the file itself, or a diffusers scheduler"
            )
        return json.loads(path.read_text())
    if isinstance(scheduler, Mapping):
        return dict(scheduler)
    config = getattr(scheduler, "config", None)
    if isinstance(config, Mapping):
        out = {"_class_name": type(scheduler).__name__, **dict(config)}
        ab = getattr(scheduler, "alphas_cumprod", None)
        if isinstance(ab, Tensor):
            out["alphas_cumprod"] = ab.detach().cpu().to(torch.float64)
        return out
    raise ValueError(
        f"scheduler must be a diffusers scheduler, its config dict, or a path to "
        f"scheduler_config.json; got {type(scheduler).__name__}"
    )


def check_prediction_type(prediction_type: str) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"unknown prediction_type {prediction_type!r}; choose one of "
            f"{', '.join(PREDICTION_TYPES)}"
        )
    return prediction_type


class DiscreteSchedule:
    """The discrete VP schedule ``alpha_bar_t`` as sigmas ``sigma_t = sqrt((1 - alpha_bar_t) /
    alpha_bar_t)``, with the maps ``sigma -> t`` and ``t -> sigma`` that interpolate
    ``log sigma`` linearly between integer timesteps (k-diffusion, ``DiscreteSchedule``)."""

    def __init__(self, alphas_cumprod: Tensor) -> None:
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()  # increasing
        self.log_sigmas = self.sigmas.log()

    @classmethod
    def from_scheduler(cls, scheduler: object) -> DiscreteSchedule:
        """From a diffusers scheduler, its config dict or its ``scheduler_config.json``."""
        config = read_scheduler_config(scheduler)
        if config.get("_class_name") in _VE_OR_FLOW:
            raise ValueError(
                f"{config['_class_name']} is not a discrete VP (DDPM) schedule; scorelab's "
                "diffusers adapter reads DDPM-family schedulers (DDPM, DDIM, PNDM, DPM-Solver, "
                "UniPC, Euler, ...)"
            )
        return cls(alphas_cumprod_from_config(config))

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    @property
    def sigma_min(self) -> float:
        """``sigma_0``, the smallest level of the schedule."""
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        """``sigma_(T-1)``, the largest level of the schedule."""
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: Tensor, quantize: bool = False) -> Tensor:
        """The fractional timestep of ``sigma``: ``t = i + (log sigma - log sigma_i) /
        (log sigma_(i+1) - log sigma_i)`` for ``sigma_i <= sigma <= sigma_(i+1)``, clamped to
        ``[0, T-1]`` outside the schedule; ``quantize`` rounds to the nearest integer. float64 on
        the CPU (MPS has no float64: move the result with its dtype, ``.to(x)``)."""
        log_sigma = sigma.detach().to("cpu", torch.float64).log()
        log_sigmas = self.log_sigmas
        i = torch.searchsorted(log_sigmas, log_sigma.contiguous(), right=True) - 1
        i = i.clamp(0, len(log_sigmas) - 2)
        lo, hi = log_sigmas[i], log_sigmas[i + 1]
        w = ((log_sigma - lo) / (hi - lo)).clamp(0, 1)
        t = i.to(torch.float64) + w
        return t.round() if quantize else t

    def t_to_sigma(self, t: Tensor) -> Tensor:
        """``sigma`` at a (fractional) timestep: ``exp`` of ``log sigma`` interpolated linearly
        between the integer timesteps around ``t`` (the inverse of ``sigma_to_t``); float64 on
        the CPU, like ``sigma_to_t``."""
        t = torch.as_tensor(t).detach().to("cpu", torch.float64)
        t = t.clamp(0, self.num_train_timesteps - 1)
        log_sigmas = self.log_sigmas
        lo = t.floor().long().clamp(max=len(log_sigmas) - 2)
        w = t - lo.to(torch.float64)
        return ((1 - w) * log_sigmas[lo] + w * log_sigmas[lo + 1]).exp()

    def sigmas_at(self, timesteps: Tensor | list[int], final_sigma: float = 0.0) -> Tensor:
        """The decreasing sigma sequence (float64) of a sampler's ``timesteps`` (diffusers'
        ``scheduler.timesteps``), ending in ``final_sigma`` (0: the step to clean data)."""
        t = torch.as_tensor(timesteps).to(torch.float64)
        return torch.cat([self.t_to_sigma(t), t.new_tensor([final_sigma])])
