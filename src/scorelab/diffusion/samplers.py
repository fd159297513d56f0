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


def _step_order(i: int, steps: int, order: int) -> int:
    """Order of multistep step ``i`` of ``steps``: a lower-order warm start (only ``i + 1``
    values known) and, below 15 steps, lower order on the last steps, where the steps in
    ``log sigma`` are long (diffusers' ``lower_order_final``); the step to 0 is ``D`` anyway."""
    return max(1, min(order, i + 1, steps - i if steps < 15 else order))


def _exp_moments(h: float, k: int) -> list[float]:
    """``mu_m = h int_0^1 exp(-h (1 - u)) u^m du`` for ``m < k``: the integrals of the monomials
    against the exponential-integrator kernel over one step of length ``h`` in
    ``lambda = -log sigma``: ``mu_m = m! h phi_(m+1)(-h)``, the ``phi``-functions of exponential
    integrators that DPM-Solver++ (Lu et al. 2022) uses; ``mu_0 = 1 - e^-h``.
    A series for small ``h`` (the recursion ``mu_m = 1 - m mu_(m-1) / h`` cancels there)."""
    if h < 1.0:
        return [h * sum((-h) ** j * math.factorial(m) / math.factorial(m + j + 1)
                        for j in range(24)) for m in range(k)]  # fmt: skip
    mu = [-math.expm1(-h)]
    for m in range(1, k):
        mu.append(1 - m * mu[-1] / h)
    return mu


def _interp_weights(nodes: list[float], moments: list[float]) -> list[float]:
    """Weights ``w`` with ``sum_j w_j r_j^m = moments[m]``, ``m < len(nodes)``: integrating the
    polynomial through values at the (normalized) ``nodes`` against a kernel with those
    moments. Every multistep update here (Adams-Bashforth, DPM-Solver++, UniPC) is one call."""
    vander = np.vander(np.asarray(nodes, dtype=np.float64), len(nodes), increasing=True).T
    return np.linalg.solve(vander, np.asarray(moments, dtype=np.float64)).tolist()


def _combine(x: Tensor, c: float, weights: list[float], values: list[Tensor]) -> Tensor:
    """``c x + sum_j w_j v_j`` in ``x``'s dtype, one output buffer."""
    out = x * c
    for w, v in zip(weights, values, strict=True):
        out.add_(v, alpha=w)
    return out


def _lambda(sigma: Tensor) -> float:
    return -math.log(float(sigma))


def _push(history: list, value: object, keep: int) -> list:
    """``history + [value]``, keeping the newest ``keep`` entries."""
    return [*history, value][-keep:]


def _check_order(order: int, most: int, name: str) -> None:
    if not isinstance(order, int) or not 1 <= order <= most:
        raise ValueError(f"{name}: order must be an int from 1 to {most}; got {order!r}")


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


ANNEALED_EPS_RATIO = 2e-5 / 0.01**2  # Song & Ermon's eps / sigma_L^2 (2e-5 at sigma_L = 0.01)
ANNEALED_STABLE_RATIO = 4.0  # a_i < 4 sigma_i^2: Langevin on N(0, sigma_i^2) contracts


@torch.no_grad()
def annealed_langevin(denoiser, x, sigmas, *, generator=None, callback=None,
                      steps_per_level=100, eps=None, form="ncsn", final_denoise=True):  # fmt: skip
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): for each level
    ``sigma_1 > ... > sigma_L`` take ``T`` steps ``x <- x + (a/2) s(x, sigma_i) + sqrt(a) z``
    with ``a = eps sigma_i^2 / sigma_L^2``; then a Tweedie step ``D(x, sigma_L)``, so
    ``L T + 1`` evaluations. ``eps`` defaults to ``0.2 sigma_L^2``, the paper's ratio
    ``eps / sigma_L^2`` (2e-5 at sigma_L = 0.01), so the step fits whatever ``sigma_L``;
    a ratio of 4 or more is refused: where ``sigma_i`` dwarfs the data's spread the chain is
    Langevin on ``N(0, sigma_i^2)``, which diverges for ``a >= 4 sigma_i^2``.

    ``form="denoising"`` uses ``a = 2 sigma_i^2``: the step is ``x <- D(x, sigma_i) +
    sqrt(2) sigma_i z``.
    """
    if form not in ("ncsn", "denoising"):
        raise ValueError(f"form must be 'ncsn' or 'denoising'; got {form!r}")
    if not isinstance(steps_per_level, int) or steps_per_level < 1:
        raise ValueError(f"steps_per_level must be a positive int; got {steps_per_level!r}")
    levels = sigmas[sigmas > 0]
    sigma_last = levels[-1]
    ratio = ANNEALED_EPS_RATIO if eps is None else eps / float(sigma_last) ** 2
    if form == "ncsn" and not 0 < ratio < ANNEALED_STABLE_RATIO:
        raise ValueError(
            f"annealed_langevin: eps = {eps:.3g} is {ratio:.3g} sigma_L^2 (sigma_L = "
            f"{float(sigma_last):.3g}); the steps a_i = eps sigma_i^2 / sigma_L^2 diverge at "
            f"the high levels unless eps < {ANNEALED_STABLE_RATIO:g} sigma_L^2 = "
            f"{ANNEALED_STABLE_RATIO * float(sigma_last) ** 2:.3g}: pass a smaller eps, or "
            f"leave it out for {ANNEALED_EPS_RATIO:g} sigma_L^2 (Song & Ermon's ratio)"
        )
    i = 0
    for sigma in levels:
        a = ratio * sigma**2 if form == "ncsn" else 2 * sigma**2
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
def dpmpp_3m_sde(denoiser, x, sigmas, *, generator=None, callback=None, eta=1.0,
                 s_noise=1.0):  # fmt: skip
    """DPM-Solver++(3M) SDE (Lu et al. 2022, multistep DPM-Solver++ on the diffusion SDE, as in
    k-diffusion's ``sample_dpmpp_3m_sde``): the data-prediction exponential integrator with noise
    fraction ``eta``, ``x' = e^-(1+eta)h x + int e^-(1+eta)(h-t) D + sigma' sqrt(1 - e^-2 eta h)
    z``, with ``D`` the quadratic through the last three denoised values, integrated exactly
    (so third order at ``eta = 0``; warm start and last steps at lower order)."""
    name, steps = ("dpmpp_3m_sde" if eta > 0 else "dpmpp_3m"), len(sigmas) - 1
    lams: list[float] = []  # lambda = -log sigma of the stored denoised values
    hist: list[Tensor] = []  # the last (up to 3) denoised values, oldest first
    for i in range(steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        lams, hist = _push(lams, _lambda(sigma), 3), _push(hist, denoised, 3)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(float(sigma / sigma_next))
            k = _step_order(i, steps, 3)
            nodes = [(lam - lams[-1]) / h for lam in lams[-k:]]  # <= 0, in units of h
            w = _interp_weights(nodes, _exp_moments(h * (1 + eta), k))
            x = _combine(x, math.exp(-h * (1 + eta)), w, hist[-k:])
            if eta > 0:  # the noise the exact linear SDE step adds
                std = float(sigma_next) * math.sqrt(-math.expm1(-2 * eta * h)) * s_noise
                x.add_(_noise(x, generator), alpha=std)
        _finish(x, i, sigma, sigma_next, denoised, callback, name)
    return x


@torch.no_grad()
def dpmpp_3m(denoiser, x, sigmas, *, generator=None, callback=None):
    """DPM-Solver++(3M) (Lu et al. 2022, multistep third order in ``lambda = -log sigma``, data
    prediction): ``dpmpp_3m_sde`` with ``eta = 0``, one evaluation a step."""
    return dpmpp_3m_sde(denoiser, x, sigmas, generator=generator, callback=callback, eta=0.0)


@torch.no_grad()
def unipc(denoiser, x, sigmas, *, generator=None, callback=None, order=3, corrector=True):
    """UniPC (Zhao et al. 2023; data prediction, ``B(h) = expm1(h)``, the "bh2" variant):
    a multistep predictor UniP of ``order`` in ``lambda = -log sigma``, and the corrector UniC,
    which redoes each step with the next step's evaluation added as a node at ``r = 1``, so
    it costs no evaluation (NFE = steps) and raises the order by one. With bh2 the two-node
    weights use ``rho = 1/2``; with more nodes the order conditions are solved exactly."""
    _check_order(order, 3, "unipc")
    steps = len(sigmas) - 1
    lams: list[float] = []
    hist: list[Tensor] = []
    prev = None  # (x, h, nodes) of the last predictor step, for the corrector
    for i in range(steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        # UniC: the last step again, with the new D(x) as a node at r = 1
        if corrector and prev is not None and sigma_next > 0:
            x_prev, h_prev, nodes = prev
            nodes = [*nodes, 1.0]
            w = _interp_weights(nodes, _unipc_moments(h_prev, len(nodes)))
            x = _combine(x_prev, math.exp(-h_prev), w, [*hist[-len(nodes) + 1 :], denoised])
        lams, hist = _push(lams, _lambda(sigma), order), _push(hist, denoised, order)
        if sigma_next == 0:
            x = denoised
        else:  # UniP
            h = math.log(float(sigma / sigma_next))
            k = _step_order(i, steps, order)
            nodes = [(lam - lams[-1]) / h for lam in lams[-k:]]
            prev = (x, h, nodes)
            x = _combine(x, math.exp(-h), _interp_weights(nodes, _unipc_moments(h, k)), hist[-k:])
        _finish(x, i, sigma, sigma_next, denoised, callback, "unipc")
    return x


def _unipc_moments(h: float, k: int) -> list[float]:
    """The moments UniPC-bh2 matches: exact (``_exp_moments``) except that with two nodes the
    first-order one is ``B(h) rho = mu_0 / 2`` (``rho = 1/2``, the paper's order-2 choice)."""
    mu = _exp_moments(h, k)
    return [mu[0], mu[0] / 2] if k == 2 else mu


@torch.no_grad()
def ipndm(denoiser, x, sigmas, *, generator=None, callback=None, order=4):
    """Improved PNDM, "iPNDM" (Zhang & Chen 2023, DEIS): Adams-Bashforth of ``order``
    (<= 4) on the probability-flow ODE ``dx/dsigma = (x - D) / sigma`` reusing past slopes,
    with variable-step weights (the slopes' interpolating polynomial integrated over each
    step), a lower-order warm start and lower order on the last steps; one evaluation a step."""
    _check_order(order, 4, "ipndm")
    steps = len(sigmas) - 1
    nodes_sigma: list[float] = []
    slopes: list[Tensor] = []
    for i in range(steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(denoiser, x, sigma)
        d = (x - denoised) / sigma
        nodes_sigma, slopes = _push(nodes_sigma, float(sigma), order), _push(slopes, d, order)
        if sigma_next == 0:
            x = denoised  # Euler to 0: x - sigma d
        else:
            dt = float(sigma_next - sigma)
            k = _step_order(i, steps, order)
            nodes = [(s - nodes_sigma[-1]) / dt for s in nodes_sigma[-k:]]
            w = _interp_weights(nodes, [1 / (m + 1) for m in range(k)])
            x = _combine(x, 1.0, [dt * wj for wj in w], slopes[-k:])
        _finish(x, i, sigma, sigma_next, denoised, callback, "ipndm")
    return x


class _OverBudget(Exception):
    """Raised inside ``rk45``'s right-hand side when the next evaluation would pass ``max_nfe``."""

    def __init__(self, sigma: float):
        self.sigma = sigma


@torch.no_grad()
def rk45(denoiser, x, sigmas, *, generator=None, callback=None, rtol=1e-4, atol=1e-4,
         max_nfe=None):  # fmt: skip
    """Adaptive Runge-Kutta (Dormand-Prince 5(4), scipy's RK45) on the probability-flow ODE in
    ``t = log sigma``: ``dx/dt = x - D(x, sigma)``, from ``sigmas[0]`` to the smallest positive
    sigma, then one Euler step to 0 (``x = D``). Step sizes follow ``rtol``/``atol``, so the
    number of evaluations is an outcome; with ``max_nfe`` a solve that would need more (the
    last step included) stops with a ``ValueError`` saying where it got to."""
    levels = sigmas[sigmas > 0]
    if len(levels) < 2:
        raise ValueError("rk45 needs sigmas with two positive levels (sigma_max, sigma_min)")
    if max_nfe is not None and (not isinstance(max_nfe, int) or max_nfe < 2):
        raise ValueError(f"rk45 needs a budget (nfe, max_nfe) of at least 2 evaluations (one "
                         f"ODE evaluation and the last step); got {max_nfe!r}")  # fmt: skip
    sigma_hi, sigma_lo = levels[0], levels[-1]
    shape, dtype, device = x.shape, x.dtype, x.device
    count = [0]

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        if max_nfe is not None and count[0] + 1 > max_nfe - 1:  # keep one for the last step
            raise _OverBudget(math.exp(t))
        xt = torch.from_numpy(y).to(dtype=dtype, device=device).reshape(shape)
        sigma = torch.tensor(math.exp(t), dtype=dtype, device=device)
        count[0] += 1
        return (xt - _denoise(denoiser, xt, sigma)).reshape(-1).double().cpu().numpy()

    y0 = x.reshape(-1).double().cpu().numpy()
    t0, t1 = math.log(float(sigma_hi)), math.log(float(sigma_lo))
    try:
        sol = solve_ivp(rhs, (t0, t1), y0, method="RK45", rtol=rtol, atol=atol)
    except _OverBudget as stop:
        raise ValueError(
            f"rk45 spent its budget of nfe = {max_nfe} evaluations at sigma {stop.sigma:.3g} "
            f"on the way from {float(sigma_hi):.3g} to {float(sigma_lo):.3g} (rtol = {rtol:g}, "
            f"atol = {atol:g}); an adaptive solve takes 6 evaluations a step and usually 50 or "
            "more in all: raise nfe, loosen rtol/atol, or use a fixed-budget solver such as "
            "unipc"
        ) from None
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
    "dpmpp_3m": dpmpp_3m,
    "dpmpp_3m_sde": dpmpp_3m_sde,
    "unipc": unipc,
    "ipndm": ipndm,
}
