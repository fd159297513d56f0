"""ChEES-HMC: the jitter, per-chain step counts, the trajectory-length adaptation, exactness."""

from __future__ import annotations

import math

import torch

from scorelab import densities, mcmc
from scorelab.mcmc import chees, kernels
from scorelab.mcmc.metric import Metric
from tests.mcmc.test_kernels import assert_moments
from tests.mcmc.test_nuts import _correlated, assert_detailed_balance

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_halton_and_step_counts():
    assert [chees.halton(i) for i in range(1, 6)] == [0.5, 0.25, 0.75, 0.125, 0.625]
    h = torch.tensor([0.1, 0.3, 1e-6], dtype=F64)
    n = chees.n_steps(1.0, torch.tensor([0.5], dtype=F64), h)
    assert n.tolist() == [5, 2, chees.MAX_LEAPFROG]  # ceil(u T / h), capped
    assert chees.n_steps(None, torch.tensor([0.5]), h).tolist() == [1, 1, 1]


def test_leapfrog_counts_match_one_chain_at_a_time():
    """Chains with different step counts and sizes, batched and gathered, give exactly what
    each chain's own leapfrog gives; gradient evaluations are only the requested ones."""
    calls = []

    class Counting(densities.Gaussian):
        def _value_and_score(self, x):
            calls.append(x.shape[0])
            return super()._value_and_score(x)

    target = Counting(torch.zeros(3, dtype=F64), torch.diag(torch.tensor([1.0, 2.0, 4.0])))
    x = target.sample(4, generator=_gen(1), dtype=F64)
    state = kernels.init(target, x)
    p = torch.randn(4, 3, generator=_gen(2), dtype=F64)
    h = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    n = torch.tensor([3, 1, 5, 2])
    metric = Metric.from_inv_mass(torch.tensor([1.0, 0.5, 2.0], dtype=F64))
    calls.clear()
    got, p_got = chees.leapfrog_counts(target, state, p, h, metric, n)
    assert sum(calls) == n.sum().item()
    for c in range(4):
        one = kernels.State(x[c : c + 1], state.log_prob[c : c + 1], state.score[c : c + 1])
        want, p_want = kernels.leapfrog(target, one, p[c : c + 1], h[c].item(), metric, int(n[c]))
        torch.testing.assert_close(got.x[c : c + 1], want.x)
        torch.testing.assert_close(p_got[c : c + 1], p_want)


def test_chees_gradient_is_the_criterion_derivative():
    """Per chain, the estimator is d/dlog T of (|x'(T) - m'|^2 - |x - m|^2)^2 / 4 along the
    flow (dx'/dT = u v'), with the means held fixed: checked by autograd through a
    linear flow x'(T) = x + u T v (unit metric)."""
    g = _gen(4)
    x0, x1, p1 = (torch.randn(8, 3, generator=g, dtype=F64) for _ in range(3))
    u, length = 0.7, 2.0
    ok = torch.ones(8, dtype=torch.bool)
    accept = torch.ones(8, dtype=F64)
    metric = Metric.identity(x0)
    got = chees.chees_gradient(metric, x0, x1, p1, accept, ok, torch.tensor(u * length))
    log_t = torch.tensor(math.log(length), dtype=F64, requires_grad=True)
    m1, m0 = x1.mean(0), x0.mean(0)
    xt = x1 + u * (log_t.exp() - length) * p1  # passes through x1 at T = length
    crit = 0.25 * (((xt - m1) ** 2).sum(-1) - ((x0 - m0) ** 2).sum(-1)) ** 2
    want = torch.stack([torch.autograd.grad(c, log_t, retain_graph=True)[0] for c in crit])
    torch.testing.assert_close(got, want)


def _run(target, x0, step, length, n, inv_mass=None, seed=0):
    state, g = kernels.init(target, x0), _gen(seed)
    xs = []
    for _ in range(n):
        state, _ = chees.chees_step(target, state, step, g, inv_mass=inv_mass,
                                    trajectory_length=length)  # fmt: skip
        xs.append(state.x)
    return torch.stack(xs, 1)


def test_leaves_gaussians_and_a_mixture_invariant():
    var = torch.logspace(0, 2, 100, dtype=F64)
    target = densities.Gaussian(torch.zeros(100, dtype=F64), torch.diag(var))
    x0 = target.sample(64, generator=_gen(1), dtype=F64)
    assert_moments(_run(target, x0, 0.5, 2.0, 100, inv_mass=var), target.mean, var, 500)
    target = _correlated()
    x0 = target.sample(64, generator=_gen(1), dtype=F64)
    assert_moments(_run(target, x0, 0.4, 4.0, 150), target.mean, target.cov.diagonal(), 500)
    target = densities.GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.5, 0.5]], [0.5, 0.7])
    x0 = target.sample(128, generator=_gen(1), dtype=F64)
    moments = (target.mean.to(F64), target.cov.diagonal().to(F64))
    assert_moments(_run(target, x0, 0.3, 2.0, 150), *moments, 500)


def test_detailed_balance_on_a_1d_mixture():
    assert_detailed_balance(
        lambda t, s, g: chees.chees_step(t, s, 0.3, g, trajectory_length=1.5, jitter=None)
    )


def _adapted_length(scale: float) -> tuple[float, mcmc.MCMCResult]:
    target = densities.Gaussian(torch.zeros(10, dtype=F64), scale**2 * torch.eye(10, dtype=F64))
    init = target.sample(128, generator=_gen(9), dtype=F64)
    res = mcmc.sample(target, "chees", chains=128, steps=100, warmup=600, adapt_mass=False,
                      init=init, dtype=F64, generator=_gen(3), progress=False)  # fmt: skip
    steps = res.extra["n_leapfrog"].double().mean().item()
    # E[ceil(u T / h)] ~ T / (2 h) + 1/2 for u uniform on (0, 1]
    return 2 * (steps - 0.5) * res.step_size, res


def test_adapted_length_scales_with_the_target():
    """On N(0, s^2 I) with a unit metric the whole scheme is equivariant: the adapted T is
    proportional to s (here s = 1 and 4 from the same seed). For a Gaussian the criterion has
    local optima near a quarter and three quarters of the period 2 pi s; T lands on one. The
    draws pass the verdict's ESS, E-BFMI and divergence checks."""
    (t1, res), (t4, _) = _adapted_length(1.0), _adapted_length(4.0)
    assert 1.0 < t1 < 6.0, t1
    assert 0.67 < t4 / (4 * t1) < 1.5, (t1, t4)
    assert res.accept_rate.mean() > 0.5
    assert all(c.passed for c in res.verdict() if c.name != "max R-hat")
    assert (mcmc.rhat(res.samples) < 1.02).all()
