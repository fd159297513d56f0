"""Noise processes agree with their reference definitions to float precision."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad, solve_ivp

from scorelab import diffusion

F64 = torch.float64
T = torch.tensor([1e-3, 0.1, 0.37, 0.5, 0.9, 1.0], dtype=F64)


def test_ddpm_linear_alphas_cumprod():
    """Ho et al. 2020: beta linear in [1e-4, 0.02], T = 1000; alpha_bar = cumprod(1 - beta)."""
    ab = diffusion.ddpm_alphas_cumprod(1000, "linear")
    ref = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000, dtype=np.float64))
    np.testing.assert_allclose(ab.numpy(), ref, rtol=1e-12)
    assert ab[0].item() == pytest.approx(1 - 1e-4, rel=1e-15)
    assert ab[-1].item() == pytest.approx(4.0358e-05, rel=1e-4)  # the widely quoted value


def test_ddpm_cosine_alphas_cumprod():
    """Nichol & Dhariwal 2021, eq. 17, with betas clipped at 0.999."""
    ab = diffusion.ddpm_alphas_cumprod(1000, "cosine").numpy()
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    ref = np.cumprod([1 - min(1 - f(t + 1) / f(t), 0.999) for t in range(1000)])
    np.testing.assert_allclose(ab, ref, rtol=1e-12)
    np.testing.assert_allclose(ab[:500], [f(t + 1) / f(0) for t in range(500)], rtol=1e-10)


def test_matches_diffusers_when_installed():
    schedulers = pytest.importorskip("diffusers.schedulers")
    # diffusers computes in float32: a cumulative product of 1000 float32 factors carries up to
    # ~1000 * 6e-8 = 6e-5 relative rounding error, so that is the tolerance
    for name, ours in (("linear", "linear"), ("squaredcos_cap_v2", "cosine")):
        ref = schedulers.DDPMScheduler(beta_schedule=name).alphas_cumprod.double()
        ab = diffusion.ddpm_alphas_cumprod(1000, ours)
        torch.testing.assert_close(ab, ref, rtol=6e-5, atol=0)


def test_vp_matches_the_integral_of_beta():
    """alpha_bar(t) = exp(-int_0^t beta(s) ds), integrated numerically."""
    vp = diffusion.VP()
    for t in T.tolist():
        integral = quad(lambda s: vp.beta_min + s * (vp.beta_max - vp.beta_min), 0, t)[0]
        ab = math.exp(-integral)
        assert vp.scale(torch.tensor(t, dtype=F64)).item() ** 2 == pytest.approx(ab, rel=1e-12)
        assert vp.sigma(torch.tensor(t, dtype=F64)).item() == pytest.approx(
            math.sqrt(1 / ab - 1), rel=1e-10
        )


def test_subvp_marginal_variance_solves_its_sde():
    """Sub-VP: dx = -beta/2 x dt + sqrt(beta (1 - exp(-2 int beta))) dw from x0 = 0 has
    Var' = -beta Var + beta (1 - exp(-2 int beta)); its std must be s(t) sigma(t)."""
    sub = diffusion.SubVP()

    def rhs(t, v):
        b = sub.beta_min + t * (sub.beta_max - sub.beta_min)
        integral = sub.beta_min * t + 0.5 * (sub.beta_max - sub.beta_min) * t**2
        return -b * v + b * (1 - math.exp(-2 * integral))

    sol = solve_ivp(rhs, (0, 1), [0.0], t_eval=T.numpy(), rtol=1e-11, atol=1e-14)
    std = (sub.scale(T) * sub.sigma(T)).numpy()
    np.testing.assert_allclose(np.sqrt(sol.y[0]), std, rtol=1e-6)


def test_edm_schedule_is_karras_eq5():
    edm = diffusion.EDM()
    n = 18
    i = torch.arange(n, dtype=F64)
    ref = (80 ** (1 / 7) + i / (n - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    torch.testing.assert_close(edm.sigmas(n), torch.cat([ref, torch.zeros(1, dtype=F64)]))


def test_ve_is_the_ncsn_geometric_sequence():
    ve = diffusion.VE(sigma_min=0.01, sigma_max=1.0)
    ref = torch.logspace(0, -2, 10, dtype=F64)
    torch.testing.assert_close(ve.sigmas(10)[:-1], ref)


@pytest.mark.parametrize("name", list(diffusion.PROCESSES))
def test_sigmas_decrease_to_zero_and_inverse(name):
    proc = diffusion.make_process(name)
    s = proc.sigmas(25)
    assert s[-1] == 0 and (s[:-1] > 0).all() and (s[1:] < s[:-1]).all()
    assert s[0].item() == pytest.approx(proc.sigma_max) and s[-2].item() == pytest.approx(
        proc.sigma_min
    )
    if name != "ddpm":  # the discrete process's inverse rounds to a timestep
        torch.testing.assert_close(proc.sigma_inverse(proc.sigma(T)), T)


def test_ddpm_full_chain_uses_every_timestep():
    ddpm = diffusion.DDPM()
    torch.testing.assert_close(ddpm.sigmas(1000)[:-1], ddpm.discrete_sigmas.flip(0))


def test_forward_marginal_moments():
    """x_t = s (x0 + sigma n): for x0 = 1 the mean is s and the std s * sigma (5 SE, n = 1e5)."""
    vp = diffusion.VP()
    t = torch.full((100_000,), 0.3, dtype=F64)
    xt, _ = vp.marginal(torch.ones(100_000, 1, dtype=F64), t, torch.Generator().manual_seed(0))
    s, sig = vp.scale(t[:1]).item(), vp.sigma(t[:1]).item()
    assert abs(xt.mean().item() - s) < 5 * s * sig / math.sqrt(1e5)
    assert abs(xt.std().item() / (s * sig) - 1) < 5 * math.sqrt(0.5 / 1e5)


def test_bad_process_input():
    with pytest.raises(ValueError, match="unknown process 'vx'; choose one of ve"):
        diffusion.make_process("vx")
    with pytest.raises(ValueError, match="sigma_max must exceed sigma_min"):
        diffusion.VE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        diffusion.EDM().sigmas(0)
    with pytest.raises(ValueError, match="unknown DDPM schedule 'quad'"):
        diffusion.ddpm_alphas_cumprod(10, "quad")


def test_ddpm_linspace_spacing_matches_diffusers_levels():
    """N of N + 1 evenly spaced timesteps from 0 to T - 1, highest first: for N = 10 the
    timesteps 999, 899, ..., 100 (round(999 k / 10)), so no evaluation is spent near t = 0."""
    ddpm = diffusion.DDPM(spacing="linspace")
    k = [round(999 * i / 10) for i in range(10, 0, -1)]
    torch.testing.assert_close(ddpm.sigmas(10)[:-1], ddpm.discrete_sigmas[k])
    with pytest.raises(ValueError, match="spacing must be 'trailing' or 'linspace'"):
        diffusion.DDPM(spacing="leading")
