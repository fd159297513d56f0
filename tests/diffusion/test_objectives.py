"""Score-matching objectives recover a Gaussian's score, and satisfy their identities."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scorelab.densities import Gaussian
from scorelab.diffusion import objectives as obj

F64 = torch.float64
GAUSS = Gaussian([1.0, -0.5], [[1.0, 0.4], [0.4, 0.6]])


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


class LinearScore(nn.Module):
    """s(x, sigma) = A x + b, the family that holds every Gaussian score; D by Tweedie."""

    def __init__(self, d: int = 2):
        super().__init__()
        self.A = nn.Parameter(torch.zeros(d, d, dtype=F64))
        self.b = nn.Parameter(torch.zeros(d, dtype=F64))

    def score(self, x, sigma, cond=None):
        return x @ self.A.T + self.b

    def forward(self, x, sigma, cond=None):
        return x + sigma[:, None] ** 2 * self.score(x, sigma, cond)


def _fit(loss_fn, steps=300, lr=0.05, **kw):
    model = LinearScore()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = _gen(1)
    for i in range(steps):
        x = GAUSS.sample(512, generator=gen, dtype=F64)
        for group in opt.param_groups:  # decay the step to average out minibatch noise
            group["lr"] = lr * min(1.0, 3 * (1 - i / steps))
        opt.zero_grad()
        loss_fn(model, x, generator=gen, **kw).backward()
        opt.step()
    return model


def _target(sigma):
    """The exact score of X + sigma N as (A, b): A = -(C + sigma^2 I)^-1, b = -A mu."""
    a = -torch.linalg.inv(GAUSS.cov + sigma**2 * torch.eye(2, dtype=F64))
    return a, -a @ GAUSS.mean


@pytest.mark.parametrize(
    ("name", "kw", "sigma"),
    [
        ("esm", {"true_score": GAUSS.score}, 0.0),
        ("ism", {}, 0.0),
        ("ssm", {"n_projections": 1}, 0.0),
        ("dsm", {"sigma": 0.5}, 0.5),
    ],
)
def test_objectives_recover_a_gaussian_score(name, kw, sigma):
    """The minimizer is the (smoothed) score. With 300 steps of 512 samples and a decaying
    step, the fitted coefficients carry minibatch noise of order 1/sqrt(512 * 50) per entry
    times the loss curvature; 0.1 absolute (entries are ~1-3) leaves several times that."""
    model = _fit(getattr(obj, f"{name}_loss"), **kw)
    a, b = _target(sigma)
    torch.testing.assert_close(model.A.detach(), a, atol=0.1, rtol=0)
    torch.testing.assert_close(model.b.detach(), b, atol=0.1, rtol=0)


def test_ism_differs_from_esm_by_a_constant():
    """Hyvarinen (2005), Theorem 1: ISM(s) = ESM(s) + const for every s. On the same 2e5
    samples, the difference between two models agrees to Monte Carlo error (5 SE bound
    estimated from the per-sample terms)."""
    x = GAUSS.sample(200_000, generator=_gen(2), dtype=F64)
    m1, m2 = LinearScore(), LinearScore()
    with torch.no_grad():
        m1.A.copy_(torch.tensor([[-1.0, 0.2], [0.1, -2.0]]))
        m2.A.copy_(torch.tensor([[-0.5, 0.0], [0.0, -0.7]]))
        m2.b.copy_(torch.tensor([0.3, -0.2]))
    ism = obj.ism_loss(m1, x) - obj.ism_loss(m2, x)
    esm = obj.esm_loss(m1, x, true_score=GAUSS.score) - obj.esm_loss(m2, x, true_score=GAUSS.score)
    s1, s2, t = m1.score(x, None), m2.score(x, None), GAUSS.score(x)
    per = 0.5 * ((s1 - t) ** 2 - (s2 - t) ** 2).sum(-1)  # ESM difference per sample
    se = per.std() / math.sqrt(len(x))
    assert abs((ism - esm).item()) < 5 * se.item() + 1e-9


def test_ssm_averages_to_ism():
    """E_v v^T J v = tr J: with many projections on the same points SSM equals ISM."""
    x = GAUSS.sample(64, generator=_gen(3), dtype=F64)
    m = LinearScore()
    with torch.no_grad():
        m.A.copy_(torch.tensor([[-1.0, 0.5], [0.2, -2.0]]))
    ssm = obj.ssm_loss(m, x, n_projections=20000, generator=_gen(4))
    ism = obj.ism_loss(m, x)
    # per projection the trace estimate has sd ~ |J|_F sqrt(2) ~ 3.3; / sqrt(20000) -> 0.023
    assert abs((ssm - ism).item()) < 0.12


def test_denoising_losses_agree_with_their_score_forms():
    """DSM = E ||s(x~) + n / sigma||^2 / 2 written through D; compare on fixed noise."""
    m = LinearScore()
    with torch.no_grad():
        m.A.copy_(-torch.eye(2, dtype=F64))
    x = GAUSS.sample(1000, generator=_gen(5), dtype=F64)
    sigma = 0.7
    loss = obj.dsm_loss(m, x, sigma=sigma, generator=_gen(6))
    n = torch.randn(x.shape, generator=_gen(6), dtype=F64)
    s = m.score(x + sigma * n, None)
    ref = 0.5 * ((s + n / sigma) ** 2).sum(-1).mean()
    torch.testing.assert_close(loss, ref)


@pytest.mark.parametrize("name", ["ncsn", "ddpm", "edm"])
def test_multiscale_losses_are_minimized_by_the_exact_denoiser(name):
    """The exact posterior mean beats a perturbed one on every weighted denoising loss."""
    kw = {"sigmas": torch.logspace(1, -2, 10)} if name == "ncsn" else {}
    fn = obj.OBJECTIVES[name]

    class Exact(nn.Module):
        def __init__(self, shift):
            super().__init__()
            self.shift = shift

        def forward(self, x, sigma, cond=None):
            return GAUSS.denoise(x, sigma) + self.shift

    x = GAUSS.sample(20_000, generator=_gen(7), dtype=F64)
    exact = fn(Exact(0.0), x, generator=_gen(8), **kw)
    worse = fn(Exact(0.05), x, generator=_gen(8), **kw)
    assert exact < worse


def test_default_sigmas_follow_the_practical_rules():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    s = obj.default_sigmas(x)
    assert s[0].item() == pytest.approx(5.0) and s[-1].item() == pytest.approx(0.01)
    assert len(s) == 10  # 2-D: the coverage rule has no solution
    hi = obj.default_sigmas(torch.rand(300, 64, generator=_gen(9)))
    gamma = (hi[0] / hi[1]).item()
    from scipy.stats import norm

    root = math.sqrt(128)
    cover = norm.cdf(root * (gamma - 1) + 3 * gamma) - norm.cdf(root * (gamma - 1) - 3 * gamma)
    assert cover == pytest.approx(0.5, abs=0.05)  # ceil() on the level count moves gamma a bit
