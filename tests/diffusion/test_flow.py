"""The flow path (s = 1 - t, sigma = t / (1 - t)), the velocity parameterization and the
flow-matching objective, against exact Gaussian and Gaussian-mixture answers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from scorelab import diffusion
from scorelab.densities import Gaussian, GaussianMixture
from scorelab.nets import VelocityDenoiser, build, from_config
from tests.conftest import Z, assert_mean_cov

F64 = torch.float64


def gaussian_velocity(mean: torch.Tensor, cov: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
    """``E[n - x_0 | x_t]`` for ``x_0 ~ N(mean, cov)``, ``x_t = (1 - t) x_0 + t n``, in closed
    form from the joint Gaussian: ``E[v] = -mean``, ``Cov(v, x_t) = t I - (1 - t) cov``,
    ``Cov(x_t) = (1 - t)^2 cov + t^2 I`` (computed independently of any denoiser)."""
    eye = torch.eye(len(mean), dtype=x_t.dtype)
    t = t.reshape(-1, 1, 1)
    c_vx = t * eye - (1 - t) * cov  # [batch, d, d]
    c_xx = (1 - t) ** 2 * cov + t**2 * eye
    centred = (x_t - (1 - t[:, :, 0]) * mean).unsqueeze(-1)  # [batch, d, 1]
    return -mean + (c_vx @ torch.linalg.solve(c_xx, centred)).squeeze(-1)


class ClosedFormVelocity(nn.Module):
    """A 'network' ``F(x_in, c_noise)`` returning a Gaussian's exact velocity at ``t`` with
    ``c_noise = log(sigma) / 4 = logit(t) / 4``, plus an offset ``a + b x_in`` (parameters)."""

    def __init__(self, mean, cov):
        super().__init__()
        self.mean, self.cov = mean, cov
        self.a = nn.Parameter(torch.zeros(len(mean), dtype=F64))
        self.b = nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, x_in, c_noise, cond=None):
        t = torch.sigmoid(4 * c_noise)
        return gaussian_velocity(self.mean, self.cov, x_in, t) + self.a + self.b * x_in


MEAN = torch.tensor([0.5, -1.0], dtype=F64)
COV = torch.tensor([[0.6, 0.2], [0.2, 0.3]], dtype=F64)


# -- the process ---------------------------------------------------------------------------
def test_flow_process_is_the_linear_path():
    flow = diffusion.Flow()
    t = torch.tensor([1e-3, 0.2, 0.5, 0.9, 0.999], dtype=F64)
    torch.testing.assert_close(flow.scale(t), 1 - t)
    torch.testing.assert_close(flow.sigma(t), t / (1 - t))
    torch.testing.assert_close(flow.sigma_inverse(flow.sigma(t)), t)
    # marginal: s (x_0 + sigma n) = (1 - t) x_0 + t n with the same n
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    xt, n = flow.marginal(x0, t, torch.Generator().manual_seed(1))
    torch.testing.assert_close(xt, (1 - t)[:, None] * x0 + t[:, None] * n)
    assert flow.prior_std() == pytest.approx(math.sqrt(flow.sigma_max**2 + 1))
    assert "flow" in diffusion.PROCESSES and isinstance(diffusion.make_process("flow"), type(flow))


@pytest.mark.parametrize("spacing", ["trailing", "linspace"])
@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("steps", [1, 2, 4, 7])
def test_flow_levels_are_uniform_in_t_then_shifted(steps, shift, spacing):
    """Uniform in t ("trailing": t_max .. t_min inclusive; "linspace": Liu et al.'s Euler grid
    t_i = t_max (1 - i/N)), mapped by SD3's shift t' = shift t / (1 + (shift - 1) t)
    (Esser et al. 2024), then 0."""
    flow = diffusion.Flow(shift=shift, spacing=spacing)
    sig = flow.sigmas(steps)
    assert len(sig) == steps + 1 and sig[-1] == 0
    if spacing == "linspace":
        u = flow.t_max * (1 - torch.arange(steps, dtype=F64) / steps)
    else:
        u = torch.linspace(flow.t_max, flow.t_min, steps, dtype=F64)
    t_shifted = shift * u / (1 + (shift - 1) * u)
    torch.testing.assert_close(flow.sigma_inverse(sig[:-1]), t_shifted)
    assert sig[0].item() == pytest.approx(flow.sigma_max)
    if spacing == "trailing" and steps > 1:
        assert sig[-2].item() == pytest.approx(flow.sigma_min)
    assert (sig[:-1].diff() < 0).all()


def test_flow_rejects_bad_times():
    bad = ({"t_max": 1.0}, {"t_min": 0.0}, {"t_min": 0.5, "t_max": 0.4}, {"shift": 0},
           {"spacing": "karras"})  # fmt: skip
    for kwargs in bad:
        with pytest.raises(ValueError, match=r"t_min|t_max|shift|spacing"):
            diffusion.Flow(**kwargs)


def test_euler_in_sigma_space_is_euler_on_the_velocity():
    """x_{t'} = x_t + (t' - t) v(x_t, t) on the flow levels, in flow coordinates, equals the
    library's sigma-space Euler (x / s against sigma) to float64 rounding."""
    gm = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.5]], 0.05)
    flow = diffusion.Flow(shift=2.0, spacing="linspace")
    sig = flow.sigmas(6, F64)
    y0 = flow.prior_std() * torch.randn(
        64, 2, generator=torch.Generator().manual_seed(0), dtype=F64
    )
    y = diffusion.euler(gm.denoise, y0, sig)
    t = flow.sigma_inverse(sig)
    x = y0 * (1 - t[0])
    for i in range(6):
        v = diffusion.flow_velocity(gm.denoise, x, t[i].expand(64))
        x = x + (t[i + 1] - t[i]) * v
    torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_flow_with_the_exact_mixture_denoiser_samples_the_mixture():
    """Euler at 400 steps on the flow levels from the flow prior: mean, covariance and mode
    weights within the spread of n exact draws (z = 5 standard errors, conftest.Z)."""
    gm = GaussianMixture([0.25, 0.75], [[-2.0, 0.0], [2.0, 1.0]], [0.3, 0.5])
    n = 4000
    res = diffusion.sample(gm, n, sampler="euler", nfe=400, process="flow", dtype=F64,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert_mean_cov(res.samples, gm.mean, gm.cov)
    share = (res.samples[:, 0] < 0).double().mean().item()  # the left mode (modes 4 std apart)
    assert abs(share - 0.25) <= Z * math.sqrt(0.25 * 0.75 / n)


# -- velocity parameterization --------------------------------------------------------------
def test_exact_velocity_from_the_denoiser_matches_the_closed_form():
    g = Gaussian(MEAN, COV)
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(50, generator=gen, dtype=F64) * 0.98 + 0.01
    x_t = torch.randn(50, 2, generator=gen, dtype=F64)
    v = diffusion.flow_velocity(g.denoise, x_t, t)
    torch.testing.assert_close(v, gaussian_velocity(MEAN, COV, x_t, t), rtol=1e-10, atol=1e-10)


def test_velocity_denoiser_equals_the_exact_denoiser():
    """A velocity network returning the closed-form velocity gives D = x_t - t v, which must be
    the Gaussian's exact denoiser at every sigma (conversion formulas of VelocityDenoiser)."""
    g = Gaussian(MEAN, COV)
    model = VelocityDenoiser(ClosedFormVelocity(MEAN, COV))
    gen = torch.Generator().manual_seed(1)
    sigma = torch.exp(torch.randn(40, generator=gen, dtype=F64) * 2)  # 0.01 .. 100
    x = MEAN + torch.randn(40, 2, generator=gen, dtype=F64) * (1 + sigma[:, None])
    with torch.no_grad():
        torch.testing.assert_close(model(x, sigma), g.denoise(x, sigma), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(model.score(x, sigma), g.smoothed_score(x, sigma),
                                   rtol=1e-8, atol=1e-8)  # fmt: skip
        t, x_t = sigma / (1 + sigma), x / (1 + sigma[:, None])
        torch.testing.assert_close(model.velocity(x_t, t), gaussian_velocity(MEAN, COV, x_t, t))
    c = model.coefficients(torch.tensor([1.0, 3.0], dtype=F64))
    torch.testing.assert_close(c.c_skip, torch.tensor([0.5, 0.25], dtype=F64))
    torch.testing.assert_close(c.c_out, -torch.tensor([0.5, 0.75], dtype=F64))  # -t
    torch.testing.assert_close(c.c_in, torch.tensor([0.5, 0.25], dtype=F64))
    with pytest.raises(ValueError, match="t must lie in"):
        model.velocity(x, 1.0)


def test_velocity_model_builds_and_round_trips():
    model = build("mlp", "velocity", dim=3)
    again = from_config(model.config())
    assert isinstance(again, VelocityDenoiser) and model.config()["parameterization"] == "velocity"
    again.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(again(x, 0.7), model(x, 0.7))


# -- the objective -------------------------------------------------------------------------
@pytest.mark.parametrize("time_sampling", ["uniform", "logit_normal"])
def test_flow_matching_loss_is_the_velocity_regression(time_sampling):
    """Same seed, same numbers: the library's sigma-space loss equals
    mean ||v_theta(x_t, t) - (n - x_0)||^2 computed in flow coordinates with the same draws."""
    model = VelocityDenoiser(ClosedFormVelocity(MEAN, COV))
    with torch.no_grad():
        model.net.a.fill_(0.3)  # not the minimizer, so the loss is not just noise
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    loss = diffusion.flow_matching_loss(model, x0, time_sampling=time_sampling, logit_mean=0.2,
                                        generator=torch.Generator().manual_seed(5))  # fmt: skip
    gen = torch.Generator().manual_seed(5)  # the objective's order of draws: n, then t
    n = torch.randn(256, 2, generator=gen, dtype=F64)
    if time_sampling == "uniform":
        t = torch.rand(256, generator=gen, dtype=F64)
    else:
        t = torch.sigmoid(0.2 + torch.randn(256, generator=gen, dtype=F64))
    x_t = (1 - t[:, None]) * x0 + t[:, None] * n
    ref = ((model.velocity(x_t, t) - (n - x0)) ** 2).sum(1).mean()
    torch.testing.assert_close(loss, ref, rtol=1e-9, atol=0)


@pytest.mark.parametrize("time_sampling", ["uniform", "logit_normal"])
def test_exact_velocity_minimizes_flow_matching(time_sampling):
    """The loss is quadratic in the offset (a, b) added to the exact velocity, so its minimizer
    is (0, 0) iff the gradient there vanishes in expectation. The gradient is averaged over 20
    independent batches; |mean| must be within Z standard errors of that mean (estimated from
    the 20 batch gradients). The exact velocity of another Gaussian must fail the same check
    (the test can fail)."""
    data = Gaussian(MEAN, COV)
    wrong_mean = MEAN + torch.tensor([0.3, 0.0], dtype=F64)
    for mean, should_pass in ((MEAN, True), (wrong_mean, False)):
        model = VelocityDenoiser(ClosedFormVelocity(mean, COV))
        gen = torch.Generator().manual_seed(3)
        grads = []
        for _ in range(20):
            x0 = data.sample(1000, generator=gen).double()
            loss = diffusion.flow_matching_loss(model, x0, time_sampling=time_sampling,
                                                generator=gen)  # fmt: skip
            ga, gb = torch.autograd.grad(loss, [model.net.a, model.net.b])
            grads.append(torch.cat([ga, gb.reshape(1)]))
        g = torch.stack(grads)
        mean_g, se = g.mean(0), g.std(0) / math.sqrt(len(g))
        assert bool((mean_g.abs() <= Z * se).all()) is should_pass, (mean_g, se)


def test_ot_coupling_is_the_optimal_permutation():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, generator=gen, dtype=F64)
    n = torch.randn(6, 2, generator=gen, dtype=F64)
    paired = diffusion.ot_coupling(x, n)
    # a permutation of the noise rows
    assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, n.tolist()))
    best = min(((x - n[list(p)]) ** 2).sum().item() for p in itertools.permutations(range(6)))
    assert ((x - paired) ** 2).sum().item() == pytest.approx(best, rel=1e-12)
    # with labels, every class is coupled within itself
    cond = torch.tensor([0, 1, 0, 1, 1, 0])
    within = diffusion.ot_coupling(x, n, cond)
    for c in (0, 1):
        rows = (cond == c).nonzero().flatten()
        assert sorted(map(tuple, within[rows].tolist())) == sorted(map(tuple, n[rows].tolist()))


def test_paired_coupling_uses_the_given_noise():
    """(x_0, n) pairs with n drawn from the generator give the independent coupling's loss."""
    model = VelocityDenoiser(ClosedFormVelocity(MEAN, COV))
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    indep = diffusion.flow_matching_loss(model, x0, generator=torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    n = torch.randn(64, 2, generator=gen, dtype=F64)
    pairs = torch.stack([x0, n], 1)
    paired = diffusion.flow_matching_loss(model, pairs, coupling="paired", generator=gen)
    torch.testing.assert_close(paired, indep, rtol=1e-12, atol=0)


def test_flow_matching_bad_arguments():
    model = VelocityDenoiser(ClosedFormVelocity(MEAN, COV))
    x0 = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"time_sampling.*uniform, logit_normal"):
        diffusion.flow_matching_loss(model, x0, time_sampling="beta")
    with pytest.raises(ValueError, match=r"coupling.*independent, ot, paired"):
        diffusion.flow_matching_loss(model, x0, coupling="sinkhorn")
    with pytest.raises(ValueError, match=r"\[batch, 2, \*event\]"):
        diffusion.flow_matching_loss(model, x0, coupling="paired")
    with pytest.raises(ValueError, match="logit_std"):
        diffusion.flow_matching_loss(model, x0, time_sampling="logit_normal", logit_std=0)


# -- likelihood through the flow -----------------------------------------------------------
def test_likelihood_of_a_velocity_model_on_the_flow_levels():
    """The probability-flow likelihood of the exact velocity model between the flow's sigma_min
    and sigma_max, with the exact smoothed prior, is the exact log-density at sigma_min."""
    g = Gaussian(MEAN, COV)
    flow = diffusion.Flow()
    model = VelocityDenoiser(ClosedFormVelocity(MEAN, COV))
    x = g.sample(6, generator=torch.Generator().manual_seed(0)).double()
    top = g.smoothed(flow.sigma_max)
    logp = diffusion.log_likelihood(model, x, sigma_min=flow.sigma_min, sigma_max=flow.sigma_max,
                                    prior=top.log_prob, rtol=1e-8, atol=1e-8)  # fmt: skip
    exact = g.smoothed(flow.sigma_min).log_prob(x)
    torch.testing.assert_close(logp, exact, rtol=0, atol=1e-4)
