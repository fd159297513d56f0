"""Exact likelihood of a denoiser through the probability-flow ODE.

In sigma-space the flow is ``dx/dsigma = (x - D(x, sigma)) / sigma``; with ``t = log sigma``,
``dx/dt = x - D`` and, by the instantaneous change of variables (Chen et al. 2018; Song et al.
2021, Appendix D.2), ``d log p_t(x_t) / dt = -div(x - D) = div D - d``. Integrating from
``sigma_min`` up to ``sigma_max`` and evaluating the Gaussian prior there gives
``log p_{sigma_min}(x) = log N(x_T; 0, sigma_max^2 I) + int (d - div D) dt``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from scorelab._utils import LOG_2PI, check_positive, rand, randn
from scorelab.diffusion.api import model_device
from scorelab.errors import DivergenceError


def _conditioned(denoiser, cond: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
    """``D(x, sigma, cond)``: the denoiser with the batch's class labels fixed."""
    return denoiser(x, sigma, cond)


def _divergence(denoiser, x: Tensor, sigma: Tensor, eps: Tensor | None) -> tuple[Tensor, Tensor]:
    """``D(x, sigma)`` and ``div_x D`` per example: exact (one backward pass per dimension)
    or Hutchinson's ``eps^T (dD/dx) eps`` (Hutchinson 1989; Grathwohl et al. 2019)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        d = denoiser(xg, sigma)
        flat_d, b = d.reshape(d.shape[0], -1), x.shape[0]
        if eps is not None:
            (g,) = torch.autograd.grad((d * eps).sum(), xg)
            div = (g * eps).reshape(b, -1).sum(-1)
        else:
            div = torch.zeros(b, dtype=x.dtype, device=x.device)
            for i in range(flat_d.shape[1]):
                (g,) = torch.autograd.grad(flat_d[:, i].sum(), xg, retain_graph=True)
                div = div + g.reshape(b, -1)[:, i]
    return d.detach(), div.detach()


def log_likelihood(
    model: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    exact: bool | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    prior: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    cond: Tensor | None = None,
) -> Tensor:
    """``log p_{sigma_min}(x)`` per example, ``[batch]``, for a model exposed as a denoiser
    (a network, or a known density's ``denoise``), through the probability-flow ODE;
    ``cond`` (class labels ``[batch]``) gives ``log p_{sigma_min}(x | cond)`` of a
    class-conditional model, ``D(x, sigma, cond)``.

    ``exact`` chooses the exact divergence (default when the dimension is at most 16) or one
    Rademacher Hutchinson probe per example, fixed along the path (unbiased for the log-density,
    with variance). ``prior`` is ``log p_{sigma_max}`` (flattened points ``[batch, d]`` ->
    ``[batch]``); the default ``N(0, sigma_max^2 I)`` ignores the data's mean ``m`` and
    variance ``v``, an error of order ``|m| / sigma_max + d v / (2 sigma_max^2)`` nats per
    example. Runs on the model's device (``model_device``, else ``x``'s); the result is on
    ``x``'s device.
    """
    check_positive(sigma_min, "sigma_min")
    if not sigma_max > sigma_min:
        raise ValueError(f"sigma_max must exceed sigma_min; got {sigma_max} <= {sigma_min}")
    denoiser = model.denoise if hasattr(model, "denoise") else model
    b, shape, dtype = x.shape[0], x.shape, x.dtype
    device = model_device(model) or x.device
    if cond is not None:
        if cond.shape != (b,):
            raise ValueError(f"cond must hold one class label per example, shape ({b},); got "
                             f"{tuple(cond.shape)}")  # fmt: skip
        denoiser = functools.partial(_conditioned, denoiser, cond.to(device))
    d = math.prod(shape[1:])
    exact = d <= 16 if exact is None else exact
    eps = None
    if not exact:
        eps = randn(tuple(shape), generator, dtype, device).sign()

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(y[: b * d]).to(dtype=dtype, device=device).reshape(shape)
        sigma = torch.full((b,), math.exp(t), dtype=dtype, device=device)
        den, div = _divergence(denoiser, xt, sigma, eps)
        dx = (xt - den).reshape(-1)
        dlogp = d - div  # d log-density correction per unit t
        return torch.cat([dx, dlogp]).double().cpu().numpy()

    y0 = np.concatenate([x.reshape(-1).double().cpu().numpy(), np.zeros(b)])
    sol = solve_ivp(rhs, (math.log(sigma_min), math.log(sigma_max)), y0, method="RK45",
                    rtol=rtol, atol=atol)  # fmt: skip
    if not sol.success or not np.isfinite(sol.y[:, -1]).all():
        raise DivergenceError(f"the likelihood ODE failed between sigma {sigma_min} and "
                              f"{sigma_max}: {sol.message}")  # fmt: skip
    end = torch.from_numpy(sol.y[:, -1]).to(dtype)
    x_t, delta = end[: b * d].reshape(b, d), end[b * d :]
    if prior is None:
        log_prior = -0.5 * (x_t**2).sum(-1) / sigma_max**2 - d * (
            math.log(sigma_max) + 0.5 * LOG_2PI
        )
    else:
        log_prior = prior(x_t.to(device)).to(dtype).cpu()
    return (log_prior + delta).to(x.device)


def bits_per_dim(
    model: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    bin_width: float,
    *,
    dequantize: bool = True,
    generator: torch.Generator | None = None,
    **kwargs,
) -> Tensor:
    """Bits per dimension of discrete data ``x`` (model units, on a grid of spacing
    ``bin_width``) per example, ``[batch]``.

    With uniform dequantization (Theis et al. 2016; Ho et al. 2019, eq. 2),
    ``y = x + bin_width * (u - 1/2)``, ``u ~ U[0, 1)^d``, Jensen's inequality gives
    ``log P(x) >= E_u log p(y) + d log(bin_width)``, so
    ``bpd = -(log p(y) + d log bin_width) / (d ln 2)`` is an upper bound on the discrete
    negative log-likelihood (one draw of ``u`` per example: unbiased for the bound).
    ``dequantize=False`` evaluates the density at the bin centres instead (no bound; the
    convention of some papers). For integer-valued data normalized as ``(x - shift) / scale``
    the bin width in model units is ``1 / scale``. ``kwargs`` go to ``log_likelihood``.
    """
    check_positive(bin_width, "bin_width")
    y = x
    if dequantize:
        u = rand(tuple(x.shape), generator, x.dtype, x.device)
        y = x + bin_width * (u - 0.5)
    logp = log_likelihood(model, y, generator=generator, **kwargs)
    return nats_to_bits_per_dim(logp, math.prod(x.shape[1:]), bin_width)


def nats_to_bits_per_dim(log_density: Tensor | float, d: int, bin_width: float | None = None):
    """``-(log p + d log bin_width) / (d ln 2)``: a log-density of dequantized data (nats per
    example) as bits per dimension of the discrete data; ``bin_width=None``: of the density."""
    shift = 0.0 if bin_width is None else d * math.log(bin_width)
    return -(log_density + shift) / (d * math.log(2))
