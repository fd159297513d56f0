"""Samplers from a denoiser ``D(x, sigma)`` in sigma-space, one contract for all:

    sampler(denoiser, x, sigmas, *, generator=None, callback=None, **params) -> x

``x`` starts at the prior for ``sigmas[0]``; ``sigmas`` decreases and (except for the
Langevin samplers, which run at each listed level) ends with 0. The score is
``(D(x, sigma) - x) / sigma^2`` (Tweedie). The ``callback`` gets a dict with ``i``, ``x``,
``sigma``, ``sigma_next`` and ``denoised`` after every step. A non-finite state raises
``DivergenceError`` naming the sigma where it happened.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from scorelab._utils import randn
from scorelab.errors import DivergenceError

Denoiser = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict], None] | None


# -- shared helpers ----------------------------------------------------------------------
def _denoise(denoiser: Denoiser, x: Tensor, sigma: Tensor) -> Tensor:
    """``D(x, sigma)`` with ``sigma`` as a ``[batch]`` tensor in ``x``'s dtype."""
    return denoiser(x, sigma.to(x).expand(x.shape[0]))


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return randn(tuple(x.shape), generator, x.dtype, x.device)


def _finish(x: Tensor, i: int, sigma: Tensor, sigma_next: Tensor, denoised: Tensor,
            callback: Callback, name: str) -> None:  # fmt: skip
    """Check for divergence, then report the step."""
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():  # one pass when finite
        bad = int((~torch.isfinite(x.reshape(x.shape[0], -1))).any(-1).sum())
        raise DivergenceError(
            f"{name} diverged at step {i} (sigma = {float(sigma):.4g} -> {float(sigma_next):.4g})"
            f": {bad} of {x.shape[0]} samples are NaN/inf; use more steps, a smaller step size, "
            "or check the denoiser at this noise level"
        )
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "denoised": denoised})


def _norm(t: Tensor) -> Tensor:
    """Per-sample Euclidean norm, ``[batch]``."""
    return t.reshape(t.shape[0], -1).norm(dim=-1)


def _ancestral_step(x, denoised, sigma, sigma_next, eta, generator):
    """Move from ``sigma`` to ``sigma_next`` keeping a fraction of the predicted noise and
    adding fresh noise of std ``c = eta * sigma_next sqrt(sigma^2 - sigma_next^2) / sigma``
    (the DDIM family, Song et al. 2021, eq. 16, written in sigma-space)."""
    c = eta * sigma_next * torch.sqrt((sigma**2 - sigma_next**2).clamp(min=0)) / sigma
    x_next = denoised + torch.sqrt(sigma_next**2 - c**2) * (x - denoised) / sigma
    return x_next + c * _noise(x, generator) if eta > 0 and sigma_next > 0 else x_next


def _reverse_sde_step(x, denoised, sigma, sigma_next, generator):
    """One Euler-Maruyama step of the reverse VE SDE from ``sigma`` to ``sigma_next``:
    ``x + (sigma^2 - sigma_next^2) s + sqrt(sigma^2 - sigma_next^2) z``; to 0 it is ``D``."""
    if sigma_next == 0:
        return denoised
    dvar = sigma**2 - sigma_next**2
    return x + dvar * (denoised - x) / sigma**2 + torch.sqrt(dvar) * _noise(x, generator)


# -- Langevin ------------------------------------------------------------------------------
@torch.no_grad()
def langevin(denoiser, x, sigmas, *, generator=None, callback=None, steps=100,
             step_size=0.01, final_denoise=False):  # fmt: skip
    """Langevin dynamics at the fixed noise level ``sigmas[0]`` with the learned score:
    ``x <- x + h s(x, sigma) + sqrt(2h) z`` for ``steps`` steps (``h`` in the units of data
    normalized to unit scale). It mixes only locally, so it gets the weights of separated
    modes wrong (Song & Ermon 2019, Sec. 3.2)."""
    sigma = sigmas[0]
    h = torch.as_tensor(step_size, dtype=x.dtype, device=x.device)
    for i in range(steps):
        denoised = _denoise(denoiser, x, sigma)
        x = x + h * (denoised - x) / sigma**2 + torch.sqrt(2 * h) * _noise(x, generator)
        _finish(x, i, sigma, sigma, denoised, callback, "langevin")
    return _denoise(denoiser, x, sigma) if final_denoise else x


@torch.no_grad()
def annealed_langevin(denoiser, x, sigmas, *, generator=None, callback=None,
                      steps_per_level=100, eps=2e-5, form="ncsn", final_denoise=True):  # fmt: skip
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): for each level
    ``sigma_1 > ... > sigma_L`` take ``T`` steps ``x <- x + (a/2) s(x, sigma_i) + sqrt(a) z``
    with ``a = eps sigma_i^2 / sigma_L^2``; then a Tweedie step ``D(x, sigma_L)``.

    ``form="denoising"`` uses ``a = 2 sigma_i^2``: the step is ``x <- D(x, sigma_i) +
    sqrt(2) sigma_i z``.
    """
    if form not in ("ncsn", "denoising"):
        raise ValueError(f"form must be 'ncsn' or 'denoising'; got {form!r}")
    levels = sigmas[sigmas > 0]
    sigma_last = levels[-1]
    i = 0
    for sigma in levels:
        a = eps * sigma**2 / sigma_last**2 if form == "ncsn" else 2 * sigma**2
        for _ in range(steps_per_level):
            denoised = _denoise(denoiser, x, sigma)
            x = x + 0.5 * a * (denoised - x) / sigma**2 + torch.sqrt(a) * _noise(x, generator)
            _finish(x, i, sigma, sigma, denoised, callback, "annealed_langevin")
            i += 1
    return _denoise(denoiser, x, sigma_last) if final_denoise else x


# -- ancestral and SDE samplers -------------------------------------------------------------
@torch.no_grad()
def ddim(denoiser, x, sigmas, *, generator=None, callback=None, eta=0.0):
    """DDIM (Song, Meng & Ermon 2021) in sigma-space; ``eta = 0`` is deterministic (and equals
    Euler on the probability-flow ODE), ``eta = 1`` is DDPM's ancestral sampler."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        x = _ancestral_step(x, denoised, sigma, sigma_next, eta, generator)
        _finish(x, i, sigma, sigma_next, denoised, callback, "ddim")
    return x


@torch.no_grad()
def ddpm(denoiser, x, sigmas, *, generator=None, callback=None):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) with the posterior variance
    ``beta_tilde``: in sigma-space, ``x_next ~ q(x_next | x, x0 = D(x, sigma))``, the Gaussian
    with mean ``D + (sigma_next / sigma)^2 (x - D)`` and variance
    ``sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2``; this is DDIM with ``eta = 1``."""
    return ddim(denoiser, x, sigmas, generator=generator, callback=callback, eta=1.0)


@torch.no_grad()
def euler_maruyama(denoiser, x, sigmas, *, generator=None, callback=None):
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, eq. 6) in sigma-space:
    ``x <- x + (sigma^2 - sigma_next^2) s(x, sigma) + sqrt(sigma^2 - sigma_next^2) z``;
    the last step (to sigma = 0) returns the denoised mean."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        x = _reverse_sde_step(x, denoised, sigma, sigma_next, generator)
        _finish(x, i, sigma, sigma_next, denoised, callback, "euler_maruyama")
    return x


@torch.no_grad()
def predictor_corrector(denoiser, x, sigmas, *, generator=None, callback=None, snr=0.16,
                        corrector_steps=1):  # fmt: skip
    """Predictor-corrector (Song et al. 2021, Algorithms 2 and 4): Langevin corrector steps
    with step size ``2 (snr ||z|| / ||s||)^2`` (norms averaged over the batch, as in the
    paper's code), then a reverse-SDE Euler-Maruyama predictor."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        for _ in range(corrector_steps):  # corrector at the current level
            score = (_denoise(denoiser, x, sigma) - x) / sigma**2
            z = _noise(x, generator)
            h = 2 * (snr * _norm(z).mean() / _norm(score).mean().clamp_min(1e-30)) ** 2
            x = x + h * score + torch.sqrt(2 * h) * z
        denoised = _denoise(denoiser, x, sigma)  # predictor
        x = _reverse_sde_step(x, denoised, sigma, sigma_next, generator)
        _finish(x, i, sigma, sigma_next, denoised, callback, "pc")
    return x


# -- probability-flow ODE solvers ----------------------------------------------------------
@torch.no_grad()
def euler(denoiser, x, sigmas, *, generator=None, callback=None):
    """Euler on the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` (Karras et
    al. 2022, eq. 4 with s = 1)."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        x = torch.lerp(denoised, x, (sigma_next / sigma).to(x))  # x + (s' - s)(x - D) / s
        _finish(x, i, sigma, sigma_next, denoised, callback, "euler")
    return x


@torch.no_grad()
def heun(denoiser, x, sigmas, *, generator=None, callback=None, s_churn=0.0, s_tmin=0.0,
         s_tmax=float("inf"), s_noise=1.0):  # fmt: skip
    """Heun's second-order method with optional stochastic churn (Karras et al. 2022,
    Algorithm 2): ``2N - 1`` evaluations for ``N`` steps (the last step is Euler)."""
    n = len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        # churn: raise the noise level to sigma_hat by adding fresh noise
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            x = x + torch.sqrt(sigma_hat**2 - sigma**2) * s_noise * _noise(x, generator)
        denoised = _denoise(denoiser, x, sigma_hat)
        d = (x - denoised) / sigma_hat
        x_euler = x + (sigma_next - sigma_hat) * d
        if sigma_next > 0:  # second-order correction (trapezoid)
            d_next = (x_euler - _denoise(denoiser, x_euler, sigma_next)) / sigma_next
            x = x + (sigma_next - sigma_hat) * 0.5 * (d + d_next)
        else:
            x = x_euler
        _finish(x, i, sigma, sigma_next, denoised, callback, "heun")
    return x


@torch.no_grad()
def dpmpp_2m(denoiser, x, sigmas, *, generator=None, callback=None):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): multistep second order in
    ``lambda = -log sigma``, one evaluation a step, exact for the linear part."""
    old = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = torch.log(sigma / sigma_next)
            if old is None:
                d = denoised  # first step: DPM-Solver++(1), i.e. DDIM
            else:
                r = torch.log(sigmas[i - 1] / sigma) / h
                d = torch.lerp(denoised, old, (-1 / (2 * r)).to(x))  # (1 + c) D - c old
            x = torch.lerp(d, x, (sigma_next / sigma).to(x))  # -expm1(-h) = 1 - s' / s
        old = denoised
        _finish(x, i, sigma, sigma_next, denoised, callback, "dpmpp_2m")
    return x


@torch.no_grad()
def rk45(denoiser, x, sigmas, *, generator=None, callback=None, rtol=1e-4, atol=1e-4):
    """Adaptive Runge-Kutta (Dormand-Prince 5(4), scipy's RK45) on the probability-flow ODE in
    ``t = log sigma``: ``dx/dt = x - D(x, sigma)``, from ``sigmas[0]`` to the smallest positive
    sigma, then one Euler step to 0 (``x = D``). Step sizes follow ``rtol``/``atol``."""
    levels = sigmas[sigmas > 0]
    if len(levels) < 2:
        raise ValueError("rk45 needs sigmas with two positive levels (sigma_max, sigma_min)")
    sigma_hi, sigma_lo = levels[0], levels[-1]
    shape, dtype, device = x.shape, x.dtype, x.device
    count = [0]

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(y).to(dtype=dtype, device=device).reshape(shape)
        sigma = torch.tensor(math.exp(t), dtype=dtype, device=device)
        count[0] += 1
        return (xt - _denoise(denoiser, xt, sigma)).reshape(-1).double().cpu().numpy()

    y0 = x.reshape(-1).double().cpu().numpy()
    t0, t1 = math.log(float(sigma_hi)), math.log(float(sigma_lo))
    sol = solve_ivp(rhs, (t0, t1), y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise DivergenceError(f"rk45 failed between sigma {float(sigma_hi):.4g} and "
                              f"{float(sigma_lo):.4g}: {sol.message}")  # fmt: skip
    x = torch.from_numpy(sol.y[:, -1]).to(dtype=dtype, device=device).reshape(shape)
    _finish(x, 0, sigma_hi, sigma_lo, x, callback, "rk45")
    denoised = _denoise(denoiser, x, sigma_lo)
    _finish(denoised, 1, sigma_lo, sigma_lo * 0, denoised, callback, "rk45")
    return denoised


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "langevin": langevin,
    "annealed_langevin": annealed_langevin,
    "ddpm": ddpm,
    "ddim": ddim,
    "euler_maruyama": euler_maruyama,
    "pc": predictor_corrector,
    "euler": euler,
    "heun": heun,
    "rk45": rk45,
    "dpmpp_2m": dpmpp_2m,
}
