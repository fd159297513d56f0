"""Every sampler against exact answers, using the exact denoiser of Gaussian mixtures."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from scorelab import diffusion
from scorelab.densities import Gaussian, GaussianMixture
from scorelab.errors import DivergenceError
from scorelab.metrics import sliced_wasserstein

F64 = torch.float64
N = 4000


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _mixture():
    full = torch.tensor([[0.6, 0.25], [0.25, 0.4]])
    return GaussianMixture(
        [0.3, 0.7], [[-2.0, -1.0], [1.5, 1.0]], torch.stack([0.3 * torch.eye(2), full])
    )


GM = _mixture()


def _sw(x, y):
    # SW-1 (less tail-sensitive than SW-2), the same 256 directions for every comparison
    return sliced_wasserstein(x, y, p=1, generator=_gen(123)).item()


@pytest.fixture(scope="module")
def reference():
    """An exact reference set, and the bound on SW between two exact sets of N points: the
    mean plus 5 standard deviations over 20 independent pairs."""
    ref = GM.sample(N, generator=_gen(0), dtype=F64)
    d0 = torch.tensor([_sw(ref, GM.sample(N, generator=_gen(s), dtype=F64)) for s in range(1, 21)])
    return ref, (d0.mean() + 5 * d0.std()).item()


# Generous NFE per sampler; processes chosen as a user would. annealed Langevin follows Song &
# Ermon's set-up: 10 geometric levels from 10 to 0.1, a_i = eps sigma_i^2 / sigma_L^2 with
# eps / sigma_L^2 = 1 (stable: a_i / (2 sigma_i^2) < 1).
CASES = {
    "ddpm": dict(nfe=1000, process="ddpm"),
    "ddim": dict(nfe=200, process="ddpm"),
    "euler_maruyama": dict(nfe=500, process="edm"),
    "pc": dict(nfe=400, process="vp"),
    "euler": dict(nfe=200, process="edm"),
    "heun": dict(nfe=99, process="edm"),
    "rk45": dict(nfe=1, process="edm", rtol=1e-5, atol=1e-5),
    "dpmpp_2m": dict(nfe=50, process="edm"),
    "annealed_langevin": dict(
        nfe=2000,
        process=diffusion.VE(sigma_min=0.1, sigma_max=10.0),
        steps_per_level=100,
        eps=0.01,
    ),
}


@pytest.mark.parametrize("sampler", CASES)
def test_sampler_matches_exact_samples(sampler, reference):
    ref, bound = reference
    kw = dict(CASES[sampler])
    res = diffusion.sample(
        GM, N, sampler=sampler, generator=_gen(7), dtype=F64, progress=False, **kw
    )
    assert res.samples.shape == (N, 2) and torch.isfinite(res.samples).all()
    d = _sw(res.samples, ref)
    assert d < bound, f"{sampler}: SW {d:.4f} vs exact-vs-exact bound {bound:.4f}"
    # mode weights: the fraction nearer the first mode is Binomial(N, ~0.3); 5 SE
    frac = (GM.denoise(res.samples, 1e-3)[:, 0] < 0).double().mean().item()
    assert abs(frac - 0.3) < 5 * math.sqrt(0.3 * 0.7 / N) + 0.01


def test_nfe_is_what_was_spent():
    for sampler, nfe, want in (("euler", 20, 20), ("heun", 21, 21), ("dpmpp_2m", 10, 10),
                               ("pc", 20, 20), ("ddim", 15, 15)):  # fmt: skip
        res = diffusion.sample(GM, 10, sampler=sampler, nfe=nfe, progress=False)
        assert res.nfe == want, sampler


def test_ddim_eta0_is_euler():
    sig = diffusion.EDM().sigmas(12, F64)
    x = 80 * torch.randn(64, 2, generator=_gen(1), dtype=F64)
    a = diffusion.ddim(GM.denoise, x, sig)
    b = diffusion.euler(GM.denoise, x, sig)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _gaussian_flow_error(sampler, steps):
    """Max error of the ODE solver against the exact probability-flow map of a Gaussian.

    For N(mu, C) = U diag(lam) U^T the flow from sigma_max to sigma_min is
    x(s) = mu + U diag(sqrt((lam + s^2) / (lam + sigma_max^2))) U^T (x - mu); the final step
    to sigma = 0 (x = D(x, sigma_min)) is shared by every solver and applied to both.
    """
    g = Gaussian([0.5, -1.0], [[1.0, 0.3], [0.3, 0.5]])
    proc = diffusion.EDM(sigma_min=0.05, sigma_max=20.0)
    sig = proc.sigmas(steps, F64)
    x = 20 * torch.randn(256, 2, generator=_gen(2), dtype=F64)
    lam, u = torch.linalg.eigh(g.cov)
    ratio = torch.sqrt((lam + proc.sigma_min**2) / (lam + proc.sigma_max**2))
    exact = g.mean + ((x - g.mean) @ u * ratio) @ u.T
    exact = g.denoise(exact, proc.sigma_min)
    got = diffusion.SAMPLERS[sampler](g.denoise, x, sig)
    return (got - exact).abs().max().item()


@pytest.mark.parametrize(("sampler", "order"), [("euler", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_order_of_convergence_on_a_gaussian(sampler, order):
    """Doubling the steps divides the error by about 2^order (measured slope within 0.3)."""
    errors = [_gaussian_flow_error(sampler, n) for n in (16, 32, 64, 128)]
    slopes = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert abs(slopes[-1] - order) < 0.3, (errors, slopes)
    assert errors[-1] < 0.05


def test_rk45_meets_its_tolerance_on_a_gaussian():
    g = Gaussian([0.0], 1.0)
    x = 20 * torch.randn(64, 1, generator=_gen(3), dtype=F64)
    sig = diffusion.EDM(sigma_min=0.05, sigma_max=20.0).sigmas(2, F64)
    exact = g.denoise(x * math.sqrt((1 + 0.05**2) / (1 + 400)), 0.05)
    got = diffusion.rk45(g.denoise, x, sig, rtol=1e-7, atol=1e-7)
    assert (got - exact).abs().max() < 1e-4


def test_langevin_pitfall_and_annealing_fix():
    """For 0.2 N((-5,-5), I) + 0.8 N((5,5), I), Langevin with the exact score started from a
    broad prior keeps the chains in the basin they start in (about half and half), while
    annealed Langevin recovers the 0.2 weight (within 5 binomial standard errors)."""
    gm = GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], 1.0)
    n = 2000
    se = math.sqrt(0.2 * 0.8 / n)
    proc = diffusion.VE(sigma_min=0.1, sigma_max=20.0)
    plain = diffusion.sample(gm, n, sampler="langevin", nfe=1000, process=proc, step_size=0.05,
                             generator=_gen(4), progress=False).samples  # fmt: skip
    annealed = diffusion.sample(gm, n, sampler="annealed_langevin", nfe=1000, process=proc,
                                steps_per_level=100, eps=0.01, generator=_gen(5),
                                progress=False).samples  # fmt: skip
    frac_plain = (plain[:, 0] < 0).double().mean().item()
    frac_annealed = (annealed[:, 0] < 0).double().mean().item()
    assert abs(frac_plain - 0.2) > 10 * se
    assert abs(frac_annealed - 0.2) < 5 * se


def test_streaming_in_batches_is_reproducible():
    a = diffusion.sample(GM, 2500, sampler="euler", nfe=5, batch_size=1000, generator=_gen(6))
    b = diffusion.sample(GM, 2500, sampler="euler", nfe=5, batch_size=1000, generator=_gen(6))
    assert a.samples.shape == (2500, 2) and torch.equal(a.samples, b.samples)


def test_divergence_names_the_sigma():
    def bad(x, sigma):
        return torch.where(sigma[:, None] < 1.0, torch.nan, x * 0)

    with pytest.raises(DivergenceError, match=r"euler diverged at step \d+ \(sigma = 0\.\d+"):
        diffusion.sample(bad, 4, sampler="euler", nfe=10, shape=(2,), progress=False)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown sampler 'dpm'; choose one of langevin"):
        diffusion.sample(GM, 4, sampler="dpm")
    with pytest.raises(ValueError, match="unknown process 'vpp'"):
        diffusion.sample(GM, 4, process="vpp")
    with pytest.raises(ValueError, match="n must be a positive int"):
        diffusion.sample(GM, 0)
    with pytest.raises(ValueError, match=r"pass shape=\(\.\.\.\)"):
        diffusion.sample(lambda x, s: x, 4)
