"""Score-matching objectives. Each is ``loss = objective(model, x, *, generator, cond, ...)``.

``model`` is a denoiser ``D(x, sigma, cond)`` with a ``score(x, sigma, cond)`` method (any
``scorelab.nets.Denoiser``). The denoising objectives are one weighted regression,
``E lambda(sigma) ||D(x + sigma n, sigma) - x||^2``, that differ in how sigma is drawn and in
the weight: for single-sigma DSM ``||s + n / sigma||^2 / 2 = ||D - x||^2 / (2 sigma^4)``.
The score objectives (explicit, implicit, sliced) work at one fixed small ``sigma``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from scipy.optimize import brentq
from scipy.stats import norm
from torch import Tensor

from scorelab._utils import append_dims, check_positive, rand, randn
from scorelab.diffusion.processes import ddpm_alphas_cumprod


def _per_example(t: Tensor) -> Tensor:
    """Sum over every dimension but the first: ``[batch, ...] -> [batch]``."""
    return t.reshape(t.shape[0], -1).sum(-1)


def weighted_denoising_loss(
    model: Callable, x: Tensor, sigma: Tensor, weight: Tensor, generator=None, cond=None,
    noise: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """``mean_i weight_i ||D(x_i + sigma_i n_i, sigma_i) - x_i||^2`` with ``sigma``, ``weight``
    ``[batch]`` (Vincent 2011; Karras et al. 2022, eq. 2); ``n`` is ``noise`` if given (a
    coupling chose it), else drawn from ``N(0, I)``."""
    n = randn(tuple(x.shape), generator, x.dtype, x.device) if noise is None else noise
    noisy = x + append_dims(sigma, x.ndim) * n
    return (weight * _per_example((model(noisy, sigma, cond) - x) ** 2)).mean()


def dsm_loss(model, x, *, sigma: float, generator=None, cond=None) -> Tensor:
    """Denoising score matching at one noise level (Vincent 2011):
    ``E ||s(x + sigma n, sigma) + n / sigma||^2 / 2``."""
    check_positive(sigma, "sigma")
    s = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
    return weighted_denoising_loss(model, x, s, 0.5 / s**4, generator, cond)


def ncsn_loss(model, x, *, sigmas: Tensor, generator=None, cond=None) -> Tensor:
    """Multi-scale DSM of noise-conditional score networks (Song & Ermon 2019, eq. 6): sigma
    uniform over the geometric ``sigmas``, ``lambda(sigma) = sigma^2``, so the loss is
    ``E sigma^2 ||s + n / sigma||^2 / 2 = E ||D - x||^2 / (2 sigma^2)``."""
    sigmas = torch.as_tensor(sigmas, dtype=x.dtype, device=x.device)
    idx = (rand((x.shape[0],), generator, torch.float64, x.device) * len(sigmas)).long()
    s = sigmas[idx]
    return weighted_denoising_loss(model, x, s, 0.5 / s**2, generator, cond)


def ddpm_loss(model, x, *, T: int = 1000, schedule: str = "linear", generator=None,
              cond=None) -> Tensor:  # fmt: skip
    """DDPM's noise-prediction loss (Ho et al. 2020, eq. 14): ``t`` uniform on ``{1..T}``,
    ``E ||eps - eps_theta(x_t, t)||^2``. In sigma-space ``sigma_t^2 = 1/alpha_bar_t - 1`` and
    ``eps_theta = (x~ - D) / sigma``, so the loss is ``E ||D - x||^2 / sigma_t^2``."""
    ab = ddpm_alphas_cumprod(T, schedule).to(x.device)
    idx = (rand((x.shape[0],), generator, torch.float64, x.device) * T).long()
    s = torch.sqrt(1 / ab[idx] - 1).to(x.dtype)
    return weighted_denoising_loss(model, x, s, 1 / s**2, generator, cond)


def edm_loss(model, x, *, sigma_data: float = 0.5, p_mean: float = -1.2, p_std: float = 1.2,
             generator=None, cond=None) -> Tensor:  # fmt: skip
    """Karras et al. (2022) loss: ``ln sigma ~ N(p_mean, p_std^2)``, weight
    ``(sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (Table 1)."""
    s = torch.exp(p_mean + p_std * randn((x.shape[0],), generator, x.dtype, x.device))
    weight = (s**2 + sigma_data**2) / (s * sigma_data) ** 2
    return weighted_denoising_loss(model, x, s, weight, generator, cond)


# -- flow matching: the linear path in sigma-space -----------------------------------------
TIME_SAMPLINGS = ("uniform", "logit_normal")
COUPLINGS = ("independent", "ot", "paired")
_T_EPS = 1e-5  # t is kept in [eps, 1 - eps]: sigma = t / (1 - t) must be finite and > 0


def ot_coupling(x: Tensor, noise: Tensor, cond: Tensor | None = None) -> Tensor:
    """``noise`` reordered so that pairing ``x_i`` with it is the minibatch optimal-transport
    plan for the squared Euclidean cost (Tong et al. 2023; Pooladian et al. 2023): with equal
    uniform weights the exact plan is a permutation, found by ``linear_sum_assignment``. With
    ``cond``, each class is coupled within itself, so every class keeps a Gaussian start."""
    from scipy.optimize import linear_sum_assignment

    flat_x = x.detach().reshape(x.shape[0], -1).double().cpu()
    flat_n = noise.detach().reshape(noise.shape[0], -1).double().cpu()
    rows_all, order = torch.arange(x.shape[0]), torch.empty(x.shape[0], dtype=torch.long)
    groups = [rows_all] if cond is None else [rows_all[cond.cpu() == c] for c in cond.unique()]
    for rows in groups:
        cost = torch.cdist(flat_x[rows], flat_n[rows]).square().numpy()  # [m, m]
        _, cols = linear_sum_assignment(cost)
        order[rows] = rows[torch.as_tensor(cols)]
    return noise[order.to(noise.device)]


def flow_matching_loss(model, x, *, time_sampling: str = "uniform", logit_mean: float = 0.0,
                       logit_std: float = 1.0, coupling: str = "independent", generator=None,
                       cond=None) -> Tensor:  # fmt: skip
    """Conditional flow matching on the linear path (Lipman et al. 2023; Liu et al. 2023):
    ``E_t ||v_theta(x_t, t) - (n - x_0)||^2``, ``x_t = (1 - t) x_0 + t n``.

    In sigma-space ``v_theta = (x_t - D) / t`` and ``n - x_0 = (x_t - x_0) / t``, so this is
    ``E ||D(x_0 + sigma n, sigma) - x_0||^2 / t^2`` with ``sigma = t / (1 - t)``: the denoising
    regression with weight ``1 / t^2 = ((1 + sigma) / sigma)^2``, for any parameterization
    (``velocity`` is the natural one). ``t`` is uniform on (0, 1) or logit-normal,
    ``logit(t) ~ N(logit_mean, logit_std^2)`` (Esser et al. 2024, eq. 19), which is
    ``log sigma ~ N(logit_mean, logit_std^2)``. ``coupling``: "independent" draws ``n``
    afresh; "ot" pairs the batch with its noise by minibatch optimal transport
    (``ot_coupling``); "paired" takes given pairs, ``x`` ``[batch, 2, *event]`` holding
    ``(x_0, n)`` (a reflow's sample and the noise it came from, Liu et al. 2023).
    """
    if time_sampling not in TIME_SAMPLINGS:
        raise ValueError(
            f"unknown time_sampling {time_sampling!r}; choose one of {', '.join(TIME_SAMPLINGS)}"
        )
    if coupling not in COUPLINGS:
        raise ValueError(f"unknown coupling {coupling!r}; choose one of {', '.join(COUPLINGS)}")
    check_positive(logit_std, "logit_std")
    if coupling == "paired":
        if x.ndim < 3 or x.shape[1] != 2:
            raise ValueError(
                f"coupling 'paired' needs x of shape [batch, 2, *event] holding (sample, noise) "
                f"pairs, as scorelab.training.reflow makes; got shape {tuple(x.shape)} (a reflow "
                f"run continues with scorelab train --resume RUN, or resume_reflow)"
            )
        x, noise = x[:, 0], x[:, 1]
    else:
        noise = randn(tuple(x.shape), generator, x.dtype, x.device)
        if coupling == "ot":
            noise = ot_coupling(x, noise, cond)
    if time_sampling == "uniform":
        t = rand((x.shape[0],), generator, x.dtype, x.device)
    else:
        z = randn((x.shape[0],), generator, x.dtype, x.device)
        t = torch.sigmoid(logit_mean + logit_std * z)
    t = t.clamp(_T_EPS, 1 - _T_EPS)
    return weighted_denoising_loss(model, x, t / (1 - t), t**-2, generator, cond, noise)


# -- score objectives at a fixed sigma ----------------------------------------------------
def _score_at(model, x: Tensor, sigma: float, cond) -> Tensor:
    s = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
    return model.score(x, s, cond)


def esm_loss(model, x, *, true_score: Callable[[Tensor], Tensor], sigma: float = 0.01,
             generator=None, cond=None) -> Tensor:  # fmt: skip
    """Explicit score matching (Hyvarinen 2005, eq. 2), when the true score is known:
    ``E ||s_theta(x) - grad log p(x)||^2 / 2`` (for validation and teaching)."""
    diff = _score_at(model, x, sigma, cond) - true_score(x)
    return 0.5 * _per_example(diff**2).mean()


def ism_loss(model, x, *, sigma: float = 0.01, generator=None, cond=None) -> Tensor:
    """Implicit score matching (Hyvarinen 2005, Theorem 1):
    ``E [tr(grad_x s_theta(x)) + ||s_theta(x)||^2 / 2]`` with the exact Jacobian trace
    (one backward pass per dimension: for low dimension)."""
    x = x.detach().requires_grad_(True)
    s = _score_at(model, x, sigma, cond)
    flat = s.reshape(s.shape[0], -1)
    trace = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(flat.shape[1]):
        (g,) = torch.autograd.grad(flat[:, i].sum(), x, create_graph=True)
        trace = trace + g.reshape(g.shape[0], -1)[:, i]
    return (trace + 0.5 * (flat**2).sum(-1)).mean()


def ssm_loss(model, x, *, sigma: float = 0.01, n_projections: int = 1, generator=None,
             cond=None) -> Tensor:  # fmt: skip
    """Sliced score matching with variance reduction (Song et al. 2019, eq. 8):
    ``E_v [v^T (grad_x s_theta) v + ||s_theta||^2 / 2]``, ``v ~ N(0, I)``; one Jacobian-vector
    product per projection, so it scales to high dimension."""
    x = x.detach().requires_grad_(True)
    s = _score_at(model, x, sigma, cond)
    loss = 0.5 * _per_example(s**2)
    for _ in range(n_projections):
        v = randn(tuple(x.shape), generator, x.dtype, x.device)
        (jv,) = torch.autograd.grad((s * v).sum(), x, create_graph=True)
        loss = loss + _per_example(v * jv) / n_projections
    return loss.mean()


# -- practical noise levels ---------------------------------------------------------------
def default_sigmas(x: Tensor, sigma_min: float = 0.01, max_points: int = 2000) -> Tensor:
    """A geometric sequence by Song & Ermon (2020)'s rules: ``sigma_max`` = the largest
    pairwise distance in the data (Technique 1); ratio ``gamma`` such that
    ``Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) = 0.5``
    (Technique 2, D the dimension; it has no solution below D = 5, where 10 levels are used);
    ``sigma_min`` small against the data's resolution (0.01 for data normalized to unit
    scale)."""
    flat = x.reshape(x.shape[0], -1).double()
    if flat.shape[0] > max_points:
        flat = flat[torch.linspace(0, flat.shape[0] - 1, max_points).long()]
    sigma_max = torch.cdist(flat, flat).max().item()
    check_positive(sigma_max, "largest pairwise distance of the data")
    root = math.sqrt(2 * flat.shape[1])

    def coverage(g: float) -> float:
        return norm.cdf(root * (g - 1) + 3 * g) - norm.cdf(root * (g - 1) - 3 * g) - 0.5

    if coverage(100.0) < 0:
        gamma = brentq(coverage, 1 + 1e-9, 100.0)
        levels = max(2, math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma)) + 1)
    else:  # D < 5: the rule has no solution (coverage never drops to 0.5); use 10 levels
        levels = 10
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), levels, dtype=x.dtype)


OBJECTIVES: dict[str, Callable[..., Tensor]] = {
    "esm": esm_loss,
    "ism": ism_loss,
    "ssm": ssm_loss,
    "dsm": dsm_loss,
    "ncsn": ncsn_loss,
    "ddpm": ddpm_loss,
    "edm": edm_loss,
    "flow_matching": flow_matching_loss,
}
