"""MCMC kernels and runner, checked against exact answers.

Statistical tolerances: a Monte Carlo estimate is compared with the truth at Z = 5 Monte Carlo
standard errors, where the standard error comes from the effective sample size of the very
draws being tested (scorelab.mcmc.ess). Each test also asserts the ESS is large, so the
tolerance cannot silently become loose.
"""

from __future__ import annotations

import math

import pytest
import torch

from scorelab import densities, mcmc
from scorelab.errors import DivergenceError
from scorelab.mcmc.adaptation import DualAveraging, mass_windows
from tests.conftest import Z

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _rotated_gaussian(condition=100.0):
    """A 2-D Gaussian with variances 1 and ``condition``, rotated by 30 degrees."""
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    rot = torch.tensor([[c, -s], [s, c]], dtype=F64)
    return densities.Gaussian(
        [1.0, -1.0], rot @ torch.diag(torch.tensor([1.0, condition], dtype=F64)) @ rot.T
    )


def _estimate(series: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean over chains and draws, its MCSE from the mean-ESS, and that ESS: ``[dim]`` each."""
    ess = mcmc.ess(series, method="mean")
    return series.double().mean((0, 1)), series.double().std((0, 1)) / ess.sqrt(), ess


def assert_moments(samples, mean, var, min_ess=300):
    """E[x] and E[(x - mean)^2] per coordinate within Z MCSE of the truth."""
    for series, truth in ((samples, mean), ((samples.double() - mean) ** 2, var)):
        est, se, ess = _estimate(series)
        assert (ess > min_ess).all(), f"ESS {ess} too small for a meaningful test"
        assert ((est - truth).abs() <= Z * se).all(), (est, truth, se)


TARGETS = {
    "ill-conditioned-gaussian": _rotated_gaussian(),
    "laplace": densities.Laplace(2),
    "mixture": densities.GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.5, 0.5]], [0.5, 0.7]),
    # one shared covariance: HMC's inner leapfrog steps take the tied form of the score
    "tied-mixture": densities.GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.2, 0.4]], 0.5),
}


def run_and_check_moments(kernel: str, name: str, **options) -> mcmc.MCMCResult:
    """Sample ``TARGETS[name]`` with ``kernel`` (32 chains, ``options`` to ``mcmc.sample``) and
    assert its moments within 5 MCSE and R-hat < 1.05; the compiled-path test reuses it."""
    target = TARGETS[name]
    steps = {"rwm": 4000, "mala": 3000, "hmc": 1000}[kernel]
    if name == "ill-conditioned-gaussian" and kernel != "hmc":
        steps *= 3  # without a mass matrix, mixing along the wide axis takes ~kappa / h steps
    res = mcmc.sample(
        target, kernel, chains=32, steps=steps, warmup=1000, dtype=F64, generator=_gen(1),
        **options,
    )  # fmt: skip
    mean, cov = (target.mean, target.cov) if name != "laplace" else (torch.zeros(2), torch.eye(2))
    assert_moments(res.samples.cpu(), mean.to(F64), cov.diagonal().to(F64), min_ess=200)
    assert (mcmc.rhat(res.samples) < 1.05).all()
    return res


@pytest.mark.parametrize("kernel", ["rwm", "mala", "hmc"])
@pytest.mark.parametrize("name", TARGETS)
def test_exact_kernels_recover_moments(kernel, name):
    res = run_and_check_moments(kernel, name)
    # Dual averaging (per chain, as Stan's and BlackJAX's chains) drives the mean acceptance of
    # its warm-up *iterates* to the target. The step used afterwards is the averaged iterate;
    # acceptance falls off convexly in log step size past the target, so (Jensen) the average
    # of fluctuating iterates accepts more often: acceptance ends on or above target (up to
    # the 32 x steps draws' noise, well below 0.05), never below. How far above depends on
    # the target (0.02-0.2 measured; HMC at a fixed 10 leapfrog steps on near-Gaussians most);
    # a step collapsed by broken adaptation would accept ~1 and fail the ESS check above.
    gap = res.accept_rate.mean().item() - mcmc.KERNELS[kernel].target_accept
    assert -0.05 < gap and res.accept_rate.mean().item() < 0.99


@pytest.mark.parametrize("h", [0.1, 0.5, 1.0])
def test_ula_has_the_known_stationary_variance_bias(h):
    """ULA on N(0, s^2) is the AR(1) x' = (1 - h/s^2) x + sqrt(2h) xi, whose stationary variance
    is s^2 / (1 - h / (2 s^2)). The standard error of the variance estimate follows from the
    autocorrelation of x^2 (rho^2k): tau = (1 + rho^2) / (1 - rho^2), Var(x^2) = 2 v^2."""
    s2 = 1.0
    v = s2 / (1 - h / (2 * s2))
    chains, steps = 500, 1000
    init = torch.randn(chains, 1, generator=_gen(2), dtype=F64) * math.sqrt(v)
    res = mcmc.sample(
        densities.Gaussian([0.0], s2), "ula", chains=chains, steps=steps, warmup=0,
        step_size=h, init=init, dtype=F64, generator=_gen(3),
    )  # fmt: skip
    rho = 1 - h / s2
    tau = (1 + rho**2) / (1 - rho**2)
    se = math.sqrt(2 * v**2 * tau / (chains * steps))
    est = (res.samples**2).mean().item()
    assert abs(est - v) < Z * se
    assert abs(est - s2) > Z * se  # the bias is real and resolved at this sample size


def test_mala_at_the_same_step_size_is_unbiased():
    """MALA's MH correction removes ULA's bias at h = 0.5 (ULA's variance would be 4/3)."""
    res = mcmc.sample(
        densities.Gaussian([0.0], 1.0), "mala", chains=200, steps=2000, warmup=200,
        step_size=0.5, dtype=F64, generator=_gen(4),
    )  # fmt: skip
    assert_moments(res.samples, torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64), 5000)


def test_random_walk_never_settles():
    """Brownian motion ignores p: Var x_T = Var x_0 + 2 h T grows without bound.

    Uniform[-2, 2] start has variance 4/3; the sample variance over C chains has relative
    standard error sqrt(2 / C)."""
    chains, steps, h = 2000, 500, 0.01
    res = mcmc.sample(
        densities.Gaussian([0.0], 1.0), "random_walk", chains=chains, steps=steps, warmup=0,
        step_size=h, dtype=F64, generator=_gen(5),
    )  # fmt: skip
    for t in (99, 499):
        want = 4 / 3 + 2 * h * (t + 1)
        got = res.samples[:, t, 0].var().item()
        assert abs(got / want - 1) < Z * math.sqrt(2 / chains)
    assert res.samples[:, -1, 0].var().item() > 10  # far from the target's variance of 1


def test_sgld_posterior_mean_of_a_gaussian_model():
    """Data y_i ~ N(theta, 1), prior N(0, 10^2): the posterior is N(m, v) in closed form.

    SGLD's mean is compared at Z MCSE; its variance carries the known minibatch-noise bias
    (gradient-noise variance h^2 N^2 / B against injected 2h), so it is checked only to 30%.
    """
    y = 2.0 + torch.randn(1000, generator=_gen(6), dtype=F64)
    n = y.numel()
    v = 1 / (n + 1 / 100)
    m = v * y.sum().item()
    post = mcmc.Posterior(
        lambda th: -0.5 * (th[:, 0] / 10) ** 2,
        lambda th, batch: -0.5 * (batch - th) ** 2,
        y,
        dim=1,
        batch_size=100,
    )
    res = mcmc.sample(
        post, "sgld", chains=64, steps=3000, warmup=500, step_size=2e-4,
        init=torch.full((64, 1), m, dtype=F64), dtype=F64, generator=_gen(7),
    )  # fmt: skip
    est, se, ess = _estimate(res.samples)
    assert ess.item() > 300 and abs(est.item() - m) < Z * se.item()
    assert abs(res.samples.double().var().item() / v - 1) < 0.3


def test_hmc_adapts_the_diagonal_mass_to_the_variances():
    """The pooled warm-up variance of 32 chains x ~500 draws (ESS in the thousands) has a
    relative error of a few percent; 25% is 5 of its standard errors."""
    var = torch.logspace(0, 2, 6, dtype=F64)
    target = densities.Gaussian(torch.zeros(6), var)
    res = mcmc.sample(
        target, "hmc", chains=32, steps=200, warmup=1000, dtype=F64, generator=_gen(8)
    )
    assert ((res.inv_mass / var - 1).abs() < 0.25).all(), res.inv_mass


def test_leapfrog_is_reversible_and_second_order():
    """Harmonic oscillator H = x^2/2 + p^2/2: energy error O(h^2), exact time reversal."""
    target = densities.Gaussian([0.0, 0.0], 1.0)
    x = torch.tensor([[1.0, -0.5]], dtype=F64)
    p = torch.tensor([[0.3, 0.8]], dtype=F64)
    ones = torch.ones(2, dtype=F64)
    state = mcmc.init(target, x)

    def energy(s, mom):
        return (-s.log_prob + 0.5 * (mom**2).sum(-1)).item()

    errors = []
    for h in (0.1, 0.05):
        end, p1 = mcmc.leapfrog(target, state, p, h, ones, round(1 / h))
        errors.append(abs(energy(end, p1) - energy(state, p)))
        back, p2 = mcmc.leapfrog(target, end, -p1, h, ones, round(1 / h))
        torch.testing.assert_close(back.x, x, rtol=0, atol=1e-12)
        torch.testing.assert_close(-p2, p, rtol=0, atol=1e-12)
    assert 3.5 < errors[0] / errors[1] < 4.5  # halving h quarters the energy error


def test_leapfrog_never_writes_its_inputs():
    """The leapfrog updates its own position and momentum in place after the first step: the
    caller's state and momentum keep their values."""
    target = densities.Banana()
    state = mcmc.init(target, torch.tensor([[0.5, -0.2], [1.0, 0.3]]))
    p = torch.tensor([[0.3, 0.8], [-1.0, 0.1]])
    kept = (state.x.clone(), state.score.clone(), p.clone())
    end, p1 = mcmc.leapfrog(target, state, p, 0.1, None, 5)
    for a, b in zip((state.x, state.score, p), kept, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(end.x, state.x) and not torch.equal(p1, p)


def test_hamiltonian_correction_rejects_and_flags_every_bad_energy():
    """``hamiltonian_correct``: log-ratio ``H_0 - H_1`` with ``H = p^2/2 - log p``; a proposal
    with log p NaN, +inf or -inf, an infinite momentum or an energy error above 1000 is a
    divergence and rejected; an ordinary one with ``H_1 < H_0`` is accepted (u < 1)."""
    from scorelab.mcmc.kernels import MAX_ENERGY_ERROR, State, hamiltonian_correct
    from scorelab.mcmc.metric import Metric

    n = 6
    x0, x1 = torch.zeros(n, 1, dtype=F64), torch.ones(n, 1, dtype=F64)
    start = State(x0, torch.zeros(n, dtype=F64), x0.clone())
    bad = [math.nan, math.inf, -math.inf, 0.0, -(MAX_ENERGY_ERROR + 1.0), 0.5]
    prop = State(x1, torch.tensor(bad, dtype=F64), x1.clone())
    p0 = torch.ones(n, 1, dtype=F64)
    p1 = torch.tensor([[1.0], [1.0], [1.0], [math.inf], [0.0], [0.0]], dtype=F64)
    metric = Metric.from_inv_mass(torch.ones(1, dtype=F64))
    new, info = hamiltonian_correct(start, prop, p0, p1, metric, _gen(), 7)
    assert info.diverged.tolist() == [True] * 5 + [False]
    assert info.accepted.tolist() == [False] * 5 + [True]
    assert torch.equal(new.x, torch.cat([x0[:5], x1[5:]]))
    assert torch.isneginf(info.log_accept_ratio[:4]).all()
    # H_0 = 1/2, H_1 = -0.5: log-ratio 1, probability 1; the energy is the proposal's
    assert info.log_accept_ratio[5].item() == 1.0 and info.accept_prob[5].item() == 1.0
    assert info.extra["energy"].tolist() == [0.5] * 5 + [-0.5]
    assert info.grad_evals == 7


def test_mh_rejects_nan():
    acc = mcmc.mh_accept(torch.tensor([math.nan, -math.inf, math.inf, 0.0]), _gen())
    assert acc.tolist() == [False, False, True, True]


def test_dual_averaging_reaches_the_target():
    """On a model where acceptance = exp(-step), the averaged step tends to -log(target)."""
    da = DualAveraging(initial=1.0, target=0.6)
    for _ in range(3000):
        da.update(math.exp(-da.step_size))
    assert da.final_step_size == pytest.approx(-math.log(0.6), rel=0.02)


def test_mass_windows_follow_stans_schedule():
    assert mass_windows(1000) == [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]
    assert mass_windows(10) == []
    w = mass_windows(100)
    assert w[0][0] == 15 and w[-1][1] == 90


def _first_window_estimate(mass, xs: torch.Tensor) -> torch.Tensor:
    """Feed ``MassAdaptation`` 100 iterations ``[100, chains, dim]`` in blocks of 10, as the
    runner does, and return the estimate of the first window that ends."""
    got = None
    for t in range(0, 100, 10):
        got = mass.observe(t, xs[t : t + 10]) if got is None else got
    return got


@pytest.mark.parametrize("dense", [False, True])
def test_mass_estimate_is_the_chains_own_covariance(dense):
    """Stan's regularized window estimate from the chains' own covariances: one chain gives
    Stan's estimate of its draws; chains that are shifted copies of each other (two modes 8
    apart) give that one chain's covariance, not the spread between the modes."""
    from scorelab.mcmc.adaptation import MassAdaptation

    z = torch.randn(100, 2, generator=_gen(5), dtype=F64) @ torch.tensor(
        [[1.0, 0.0], [0.6, 0.5]], dtype=F64
    )
    window = mass_windows(100)[0]  # (15, 90): 75 draws

    def stan(draws, n_total):  # Stan's regularization of the sample covariance
        c = torch.cov(draws.T)
        c = c if dense else c.diagonal()
        eye = torch.eye(2, dtype=F64) if dense else 1.0
        return n_total / (n_total + 5) * c + 1e-3 * 5 / (n_total + 5) * eye

    draws = z[window[0] : window[1]]
    for shifts in ([0.0], [-4.0, 4.0]):
        xs = torch.stack([z + torch.tensor([s, 0.0], dtype=F64) for s in shifts], 1)
        got = _first_window_estimate(MassAdaptation(100, dense=dense), xs)
        want = stan(draws, draws.shape[0] * len(shifts))
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_pooled_diagonal_mass_is_the_chains_geometric_mean():
    """The default (pooled, diagonal) estimate is Stan's regularization, at all chains' draws,
    of the geometric mean over chains of each chain's own unbiased window variances: chains
    at scales 0.5, 1, 2 and 8 give a typical chain's variance (their geometric mean, 2.8),
    not the widest ones' (their arithmetic mean, 17.3). A chain that did not move (variance
    0) counts at 1e-4 of the median chain's variance instead of pulling the estimate to 0."""
    from scorelab.mcmc.adaptation import POOL_FLOOR, MassAdaptation

    scales = torch.tensor([[0.5, 1.0], [1.0, 1.0], [2.0, 1.0], [8.0, 1.0]], dtype=F64)
    xs = torch.randn(100, 4, 2, generator=_gen(7), dtype=F64) * scales - 3.0
    start, end = mass_windows(100)[0]
    total = 4 * (end - start)  # draws of all chains in the window
    var = xs[start:end].var(0)  # [chains, dim]
    want = total / (total + 5) * var.log().mean(0).exp() + 1e-3 * 5 / (total + 5)
    got = _first_window_estimate(MassAdaptation(100), xs)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert 2 < got[0] < 4 and var[:, 0].mean() > 12  # a typical scale, not the widest
    xs[:, 0] = 5.0  # chain 0 never moves
    var = xs[start:end].var(0)
    floor = POOL_FLOOR * var.quantile(0.5, dim=0)
    want = total / (total + 5) * var.clamp_min(floor).log().mean(0).exp() + 1e-3 * 5 / (total + 5)
    torch.testing.assert_close(
        _first_window_estimate(MassAdaptation(100), xs), want, rtol=1e-12, atol=1e-12
    )


def test_per_chain_mass_is_each_chains_own_stan_estimate():
    """``per_chain=True``: chain c's estimate is Stan's regularized variance of its own window
    draws (what one chain alone gives), not the average over chains."""
    from scorelab.mcmc.adaptation import MassAdaptation

    scales = torch.tensor([[1.0, 0.1], [3.0, 1.0], [0.5, 20.0]], dtype=F64)  # [chains, dim]
    xs = torch.randn(100, 3, 2, generator=_gen(6), dtype=F64) * scales + 4.0
    got = _first_window_estimate(MassAdaptation(100, per_chain=True), xs)
    start, end = mass_windows(100)[0]
    n = end - start
    var = xs[start:end].var(0)  # [chains, dim], unbiased
    want = n / (n + 5) * var + 1e-3 * 5 / (n + 5)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="per-chain mass matrix is diagonal"):
        MassAdaptation(100, dense=True, per_chain=True)


def test_per_chain_metric_is_each_chains_own_metric():
    """A ``[chains, dim]`` metric acts on chain c as the ``[dim]`` metric of row c: velocity
    (also on ``[chains, levels, dim]`` momenta, as NUTS's checkpoints), kinetic energy and
    momentum draws."""
    from scorelab.mcmc.metric import Metric

    inv = torch.tensor([[1.0, 4.0], [0.25, 9.0], [2.0, 0.5]], dtype=F64)
    per = Metric.from_inv_mass(inv, per_chain=True)
    assert not per.dense
    p = torch.randn(3, 2, generator=_gen(1), dtype=F64)
    levels = torch.randn(3, 5, 2, generator=_gen(2), dtype=F64)
    x = torch.zeros(3, 2, dtype=F64)
    draws = per.momentum(x, _gen(3))
    z = torch.randn(3, 2, generator=_gen(3), dtype=F64)
    for c in range(3):
        one = Metric.from_inv_mass(inv[c])
        torch.testing.assert_close(per.velocity(p)[c], one.velocity(p[c]))
        torch.testing.assert_close(per.velocity(levels)[c], one.velocity(levels[c]))
        torch.testing.assert_close(per.kinetic(p)[c], one.kinetic(p[c][None])[0])
        torch.testing.assert_close(draws[c], z[c] * inv[c].rsqrt())
    with pytest.raises(ValueError, match=r"per-chain inv_mass must be \[chains, dim\]"):
        Metric.from_inv_mass(inv[0], per_chain=True)


@pytest.mark.parametrize("kernel", ["hmc", "nuts"])
def test_per_chain_mass_adapts_each_chain_and_samples_exactly(kernel):
    """adapt_mass="per-chain": every chain's metric comes near the target's variances (the
    last window's ~500 draws of one chain, ESS ~100-500: a relative error of 6-14%, so 50% is
    beyond 3.5 of its standard errors), and the draws recover the exact moments."""
    var = torch.logspace(0, 2, 4, dtype=F64)
    target = densities.Gaussian(torch.zeros(4), var)
    res = mcmc.sample(
        target, kernel, chains=8, steps=1000, warmup=1000, dtype=F64, generator=_gen(8),
        adapt_mass="per-chain", progress=False,
    )  # fmt: skip
    assert res.inv_mass.shape == (8, 4)
    assert ((res.inv_mass / var - 1).abs() < 0.5).all(), res.inv_mass
    est, se, ess = _estimate(res.samples)
    assert (ess > 300).all() and ((est - 0).abs() < Z * se).all()
    # the variance's standard error from the ESS of the squared draws: sqrt(2 / ESS) relative
    ratio = res.samples.double().var((0, 1)) / var
    ess_sq = mcmc.ess(res.samples.double() ** 2, method="mean")
    assert (ess_sq > 300).all() and ((ratio - 1).abs() < Z * (2 / ess_sq).sqrt()).all(), ratio


def test_per_chain_mass_is_refused_where_a_kernel_shares_one():
    with pytest.raises(ValueError, match="'chees' takes one mass matrix for all chains"):
        mcmc.sample(densities.Banana(), "chees", steps=10, adapt_mass="per-chain", progress=False)
    with pytest.raises(ValueError, match="'dense' or 'per-chain'; got 'full'"):
        mcmc.sample(densities.Banana(), "hmc", steps=10, adapt_mass="full", progress=False)


def test_cli_per_chain_mass_names_the_flag(tmp_path):
    from scorelab.cli.main import main

    with pytest.raises(SystemExit, match="--per-chain-mass applies to --kernel hmc or nuts"):
        main(["mcmc", "banana", "--kernel", "mala", "--per-chain-mass", "--out", str(tmp_path)])


def test_same_seed_same_chains():
    a = mcmc.sample(densities.Banana(), "mala", chains=4, steps=50, warmup=50, generator=_gen(9))
    b = mcmc.sample(densities.Banana(), "mala", chains=4, steps=50, warmup=50, generator=_gen(9))
    assert torch.equal(a.samples, b.samples) and a.step_size == b.step_size


def test_log_density_function_target_and_thinning():
    res = mcmc.sample(
        lambda x: -0.5 * (x**2).sum(-1), "mala", dim=3, chains=4, steps=100, warmup=50,
        thin=5, generator=_gen(10),
    )  # fmt: skip
    assert res.samples.shape == (4, 20, 3)
    assert "ess_bulk" in str(res.summary()) and "mala: 4 chains x 20 draws" in res.report()


def test_ula_divergence_names_the_step_size():
    with pytest.raises(DivergenceError, match=r"ula diverged: .* step_size 5; lower the step"):
        mcmc.sample(
            densities.Gaussian([0.0], 1.0), "ula", chains=4, steps=500, warmup=0, step_size=5.0
        )


def test_hmc_divergences_are_flagged_not_hidden():
    res = mcmc.sample(
        densities.Funnel(10), "hmc", chains=8, steps=100, warmup=0, step_size=2.0,
        adapt_mass=False, generator=_gen(11),
    )  # fmt: skip
    assert res.divergences.sum() > 0 and "divergent transitions" in res.report()
    assert torch.isfinite(res.samples).all()


def test_bad_input():
    gauss = densities.Gaussian([0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="unknown kernel 'bogus'; choose one of rwm"):
        mcmc.sample(gauss, "bogus")
    with pytest.raises(ValueError, match="kernel 'random_walk' has no acceptance rate"):
        mcmc.sample(gauss, "random_walk")
    with pytest.raises(ValueError, match=r"init has shape \(3, 2\); expected \[4, 2\]"):
        mcmc.sample(gauss, chains=4, init=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="chains must be an int >= 1"):
        mcmc.sample(gauss, chains=0)
    with pytest.raises(ValueError, match="step_size must be finite and > 0"):
        mcmc.sample(gauss, step_size=-1.0)
    with pytest.raises(ValueError, match="needs a target with minibatch_score"):
        mcmc.sample(gauss, "sgld", step_size=0.1, steps=2, warmup=0)


def test_nan_at_the_initial_point_is_reported():
    def log_p(x):
        return torch.where(x[:, 0] > 0, -x[:, 0], torch.nan)

    with pytest.raises(ValueError, match=r"log-density .* is nan at the initial point of chain"):
        mcmc.sample(log_p, dim=1, chains=4, init=torch.tensor([[1.0], [-1.0], [1.0], [2.0]]))
