"""Noise processes in sigma-space: ``x_t = s(t) (x_0 + sigma(t) n)``.

Every process is described by its noise level ``sigma(t)`` and scaling ``s(t)`` on
``t in [0, 1]`` (Karras et al. 2022, eq. 4/5). Samplers work on ``x_t / s(t)``, which is the
variance-exploding process with the same ``sigma``, so one sampler serves every process; a
process only supplies the decreasing sigma sequence for a number of steps and the prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scorelab._utils import check_positive, randn


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int (number of noise levels); got {steps!r}")


def _append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


class Process:
    """Base class: ``sigma(t)``, ``scale(t)``, the sampling sigma sequence and the prior."""

    sigma_min: float
    sigma_max: float

    def sigma(self, t: Tensor) -> Tensor:
        """Noise level ``sigma(t)`` in sigma-space."""
        raise NotImplementedError

    def scale(self, t: Tensor) -> Tensor:
        """Scaling ``s(t)`` of the process in its own coordinates (1 for VE processes)."""
        return torch.ones_like(t)

    def sigma_inverse(self, sigma: Tensor) -> Tensor:
        """The time ``t`` at which ``sigma(t) = sigma``."""
        raise NotImplementedError

    def sigmas(self, steps: int, dtype: torch.dtype = torch.float64) -> Tensor:
        """``steps`` decreasing noise levels from ``sigma_max`` to ``sigma_min``, then a final 0.

        Default: uniform in ``t`` between the times of ``sigma_max`` and ``sigma_min``.
        """
        _check_steps(steps)
        t_hi = self.sigma_inverse(torch.tensor(self.sigma_max, dtype=torch.float64))
        t_lo = self.sigma_inverse(torch.tensor(self.sigma_min, dtype=torch.float64))
        t = torch.linspace(float(t_hi), float(t_lo), steps, dtype=torch.float64)
        return _append_zero(self.sigma(t)).to(dtype)

    def prior_std(self) -> float:
        """Std of the sigma-space prior at ``sigma_max``: ``sqrt(sigma_max^2 + 1)`` for a process
        whose scaled marginal has unit variance (VP, sub-VP), ``sigma_max`` otherwise (VE)."""
        return self.sigma_max

    def prior(
        self,
        n: int,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``n`` draws of the sigma-space prior ``N(0, prior_std^2 I)``, ``[n, *shape]``."""
        return self.prior_std() * randn((n, *shape), generator, dtype, device)

    def marginal(
        self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Forward sample ``x_t = s(t) (x_0 + sigma(t) n)`` in the process's own coordinates,
        with ``t`` one time per example; returns ``(x_t, n)``."""
        n = randn(tuple(x0.shape), generator, x0.dtype, x0.device)
        shape = (-1,) + (1,) * (x0.ndim - 1)
        s, sig = self.scale(t).to(x0).reshape(shape), self.sigma(t).to(x0).reshape(shape)
        return s * (x0 + sig * n), n


@dataclass
class VE(Process):
    """Variance exploding (Song et al. 2021, the NCSN SDE): geometric
    ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, ``s = 1``. Its ``sigmas(L)`` is the NCSN
    geometric sequence (Song & Ermon 2019)."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def __post_init__(self) -> None:
        check_positive(self.sigma_min, "sigma_min")
        if not self.sigma_max > self.sigma_min:
            raise ValueError(
                f"sigma_max must exceed sigma_min; got {self.sigma_max} <= {self.sigma_min}"
            )

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sigma_inverse(self, sigma: Tensor) -> Tensor:
        return torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)


@dataclass
class EDM(VE):
    """Karras et al. (2022) schedule, eq. 5: ``sigma_i = (sigma_max^(1/rho) + i/(N-1)
    (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho`` with ``rho = 7``; ``s = 1``."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def sigma(self, t: Tensor) -> Tensor:
        # t = 0 at sigma_min, t = 1 at sigma_max (so that sigmas() runs from t = 1 to 0)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (lo + t * (hi - lo)) ** self.rho

    def sigma_inverse(self, sigma: Tensor) -> Tensor:
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (sigma ** (1 / self.rho) - lo) / (hi - lo)


@dataclass
class VP(Process):
    """Variance preserving SDE (Song et al. 2021): ``beta(t) = beta_min + t (beta_max -
    beta_min)``, ``alpha_bar(t) = exp(-beta_min t - (beta_max - beta_min) t^2 / 2)``,
    ``s = sqrt(alpha_bar)``, ``sigma = sqrt(1 / alpha_bar - 1)``; sampled on ``t in [eps, 1]``."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    eps: float = 1e-3

    def __post_init__(self) -> None:
        check_positive(self.beta_min, "beta_min")
        check_positive(self.eps, "eps")
        if not self.beta_max > self.beta_min:
            raise ValueError(f"beta_max must exceed beta_min; got {self.beta_max}")
        self.sigma_min = float(self.sigma(torch.tensor(self.eps, dtype=torch.float64)))
        self.sigma_max = float(self.sigma(torch.tensor(1.0, dtype=torch.float64)))

    def log_alpha_bar(self, t: Tensor) -> Tensor:
        return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2)

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.expm1(-self.log_alpha_bar(t)))

    def scale(self, t: Tensor) -> Tensor:
        return torch.exp(0.5 * self.log_alpha_bar(t))

    def sigma_inverse(self, sigma: Tensor) -> Tensor:
        # solve beta_min t + (beta_max - beta_min) t^2 / 2 = log(1 + sigma^2) for t >= 0
        a, b, c = 0.5 * (self.beta_max - self.beta_min), self.beta_min, -torch.log1p(sigma**2)
        return (-b + torch.sqrt(b * b - 4 * a * c)) / (2 * a)

    def prior_std(self) -> float:
        return math.sqrt(self.sigma_max**2 + 1)


@dataclass
class SubVP(VP):
    """Sub-VP SDE (Song et al. 2021, eq. 29): same ``s(t)`` as VP, marginal std
    ``1 - alpha_bar(t)``, so ``sigma(t) = (1 - alpha_bar) / sqrt(alpha_bar)``."""

    def sigma(self, t: Tensor) -> Tensor:
        lab = self.log_alpha_bar(t)
        return -torch.expm1(lab) * torch.exp(-0.5 * lab)

    def sigma_inverse(self, sigma: Tensor) -> Tensor:
        # sigma = u^-1/2 - u^1/2 with u = alpha_bar: sqrt(u) = (sqrt(sigma^2 + 4) - sigma) / 2
        root = (torch.sqrt(sigma**2 + 4) - sigma) / 2
        return super().sigma_inverse(torch.sqrt(1 / root**2 - 1))

    def prior_std(self) -> float:
        # marginal variance (1 - alpha_bar)^2 + alpha_bar Var(x0) ~ 1 at t = 1
        return math.sqrt(self.sigma_max**2 + 1)


def ddpm_alphas_cumprod(
    steps: int = 1000, schedule: str = "linear", beta_start: float = 1e-4, beta_end: float = 0.02
) -> Tensor:
    """``alpha_bar_t = prod_{i<=t} (1 - beta_i)`` of DDPM's discrete schedules (float64).

    "linear": ``beta`` linear from 1e-4 to 0.02 (Ho et al. 2020). "cosine":
    ``alpha_bar(t) = f(t) / f(0)``, ``f(t) = cos^2(((t/T + s) / (1 + s)) pi / 2)``, ``s = 0.008``,
    betas clipped at 0.999 (Nichol & Dhariwal 2021, eq. 17).
    """
    _check_steps(steps)
    if schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    elif schedule == "cosine":
        s = 0.008
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        raise ValueError(f"unknown DDPM schedule {schedule!r}; choose 'linear' or 'cosine'")
    return torch.cumprod(1 - betas, 0)


@dataclass
class DDPM(Process):
    """DDPM's discrete VP process (Ho et al. 2020) with ``T`` timesteps: at step ``k``,
    ``s = sqrt(alpha_bar_k)`` and ``sigma = sqrt(1 / alpha_bar_k - 1)``. ``sigmas(N)`` takes
    ``N`` evenly spaced timesteps from ``T - 1`` down to 0 ("trailing" spacing; the full chain
    when ``N = T``), or with ``spacing="linspace"`` the ``N`` highest of ``N + 1`` evenly spaced
    timesteps (diffusers' DPM-Solver/UniPC levels: no evaluation spent at sigma ~ 0.01, better
    at low NFE); ``t = k / (T - 1)``."""

    T: int = 1000
    schedule: str = "linear"
    spacing: str = "trailing"  # "linspace": diffusers' DPM-Solver/UniPC levels, last t ~ T / N

    def __post_init__(self) -> None:
        if self.spacing not in ("trailing", "linspace"):
            raise ValueError(f"spacing must be 'trailing' or 'linspace'; got {self.spacing!r}")
        self.alphas_cumprod = ddpm_alphas_cumprod(self.T, self.schedule)
        self.discrete_sigmas = torch.sqrt(1 / self.alphas_cumprod - 1)  # increasing in k
        self.sigma_min = float(self.discrete_sigmas[0])
        self.sigma_max = float(self.discrete_sigmas[-1])

    def _index(self, t: Tensor) -> Tensor:
        return (t * (self.T - 1)).round().long().clamp(0, self.T - 1)

    def sigma(self, t: Tensor) -> Tensor:
        return self.discrete_sigmas.to(t.device)[self._index(t)].to(t.dtype)

    def scale(self, t: Tensor) -> Tensor:
        return self.alphas_cumprod.to(t.device)[self._index(t)].sqrt().to(t.dtype)

    def sigma_inverse(self, sigma: Tensor) -> Tensor:
        k = torch.searchsorted(self.discrete_sigmas, sigma.to(torch.float64).reshape(-1))
        return (k.clamp(0, self.T - 1).to(torch.float64) / (self.T - 1)).reshape(sigma.shape)

    def sigmas(self, steps: int, dtype: torch.dtype = torch.float64) -> Tensor:
        _check_steps(steps)
        if steps > self.T:
            raise ValueError(f"steps must be <= T = {self.T} for the discrete DDPM process")
        if self.spacing == "linspace":  # N levels above t = 0: no evaluation at sigma 0.01
            k = torch.linspace(0, self.T - 1, steps + 1, dtype=torch.float64).round().long()
            k = k.flip(0)[:-1]
        else:
            k = torch.linspace(self.T - 1, 0, steps, dtype=torch.float64).round().long()
        return _append_zero(self.discrete_sigmas[k]).to(dtype)

    def prior_std(self) -> float:
        return math.sqrt(self.sigma_max**2 + 1)


@dataclass
class Flow(Process):
    """The linear (rectified-flow / flow-matching) path ``x_t = (1 - t) x_0 + t n`` (Liu et al.
    2023; Lipman et al. 2023): ``s(t) = 1 - t``, ``sigma(t) = t / (1 - t)``, ``t = sigma /
    (1 + sigma)``. ``sigmas(N)`` is uniform in ``t``: with ``spacing="trailing"`` the ``N``
    levels from ``t_max`` to ``t_min`` (the endpoints included, as every process here and
    diffusers' FlowMatchEulerDiscreteScheduler), with ``spacing="linspace"`` the ``N`` highest
    of ``N + 1`` evenly spaced times from ``t_max`` to 0, ``t_i = t_max (1 - i / N)`` (Liu et
    al.'s Euler grid: no step spent near ``t = 0``, the choice for 1 to 8 steps). Each is
    mapped through SD3's resolution shift ``t' = shift t / (1 + (shift - 1) t)`` (Esser et al.
    2024, eq. 23), which in sigma-space is ``sigma' = shift sigma``.

    Euler on these levels in sigma-space is Euler on ``x_t`` in ``t`` with the velocity
    ``v = (x_t - D) / t``: ``x_{t'} = x_t + (t' - t) v`` (tested). ``t = 1`` is ``sigma = inf``,
    so sampling starts at ``t_max < 1``, from the prior ``N(0, (sigma_max^2 + 1) I)`` in
    sigma-space (``x_t`` of unit-variance data); ``sigma_min``/``sigma_max`` are the shifted
    ``t_min``/``t_max``.
    """

    t_max: float = 0.999
    t_min: float = 1e-3
    shift: float = 1.0
    spacing: str = "trailing"  # "linspace": t_max (1 - i / N), Liu et al.'s few-step grid

    def __post_init__(self) -> None:
        check_positive(self.shift, "shift")
        if not 0 < self.t_min < self.t_max < 1:
            raise ValueError(
                f"flow times need 0 < t_min < t_max < 1 (t = 1 is sigma = inf); got t_min "
                f"{self.t_min}, t_max {self.t_max}"
            )
        if self.spacing not in ("trailing", "linspace"):
            raise ValueError(f"spacing must be 'trailing' or 'linspace'; got {self.spacing!r}")
        self.sigma_min = self.shift * self.t_min / (1 - self.t_min)
        self.sigma_max = self.shift * self.t_max / (1 - self.t_max)

    def sigma(self, t: Tensor) -> Tensor:
        return t / (1 - t)

    def scale(self, t: Tensor) -> Tensor:
        return 1 - t

    def sigma_inverse(self, sigma: Tensor) -> Tensor:
        return 1 / (1 + 1 / sigma)  # sigma / (1 + sigma), also at sigma = 0 and inf

    def sigmas(self, steps: int, dtype: torch.dtype = torch.float64) -> Tensor:
        _check_steps(steps)
        if self.spacing == "linspace":  # N of N + 1 evenly spaced times, none at t = 0
            u = self.t_max * (1 - torch.arange(steps, dtype=torch.float64) / steps)
        else:
            u = torch.linspace(self.t_max, self.t_min, steps, dtype=torch.float64)
        return _append_zero(self.shift * u / (1 - u)).to(dtype)  # shifted: sigma' = shift sigma

    def prior_std(self) -> float:
        return math.sqrt(self.sigma_max**2 + 1)


def flow_velocity(denoiser: Callable[[Tensor, Tensor], Tensor], x_t: Tensor, t: Tensor) -> Tensor:
    """The flow's velocity ``v(x_t, t) = E[n - x_0 | x_t] = (x_t - D(x_t / (1 - t), t / (1 - t)))
    / t`` from a sigma-space denoiser (``x_t`` in flow coordinates, ``t`` ``[batch]`` in (0, 1));
    with a known density's exact ``denoise`` this is the exact velocity field."""
    t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])
    s = t.reshape((-1,) + (1,) * (x_t.ndim - 1))
    return (x_t - denoiser(x_t / (1 - s), t / (1 - t))) / s


PROCESSES: dict[str, type[Process]] = {
    "ve": VE,
    "edm": EDM,
    "vp": VP,
    "subvp": SubVP,
    "ddpm": DDPM,
    "flow": Flow,
}


def make_process(name: str, **params: float) -> Process:
    """Build a named process (a key of ``PROCESSES``) with keyword parameters."""
    if name not in PROCESSES:
        raise ValueError(f"unknown process {name!r}; choose one of {', '.join(PROCESSES)}")
    return PROCESSES[name](**params)
