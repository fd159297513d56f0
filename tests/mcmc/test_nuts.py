"""NUTS: each piece (criterion, checkpoints, multinomial weights) by hand, then the kernel.

Invariance tests start the chains at exact draws, so any drift of the moments is the kernel's;
tolerances are Z Monte Carlo standard errors from the draws' own ESS, asserted large.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from scorelab import densities, mcmc
from scorelab.mcmc import kernels, nuts
from scorelab.mcmc.metric import Metric
from tests.mcmc.test_kernels import assert_moments

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _t(*rows):
    return torch.tensor(rows, dtype=F64)


# -- when it stops ----------------------------------------------------------------------------


def test_uturn_by_hand():
    rho = _t([1.0, 0.0])
    # both ends move along rho: no U-turn
    assert not nuts.uturn(_t([1.0, 1.0]), _t([0.5, -2.0]), rho).item()
    # one end moves against rho (negative dot product): U-turn; zero counts as turned (Stan: > 0)
    assert nuts.uturn(_t([1.0, 1.0]), _t([-0.1, 5.0]), rho).item()
    assert nuts.uturn(_t([0.0, 1.0]), _t([1.0, 0.0]), rho).item()
    # batched: one row each
    v = _t([1.0, 0.0], [-1.0, 0.0])
    assert nuts.uturn(v, _t([1.0, 0.0], [1.0, 0.0]), _t([1.0, 0.0], [1.0, 0.0])).tolist() == [
        False,
        True,
    ]


def test_uturn_uses_velocity_through_the_metric():
    """With M^-1 = diag(1, 100), p = (1, -0.05) has velocity (1, -5): p . rho > 0 for
    rho = (1, 1), but the velocity points against rho, so merge_turning (which takes momenta and
    applies the metric) sees the U-turn."""
    metric = Metric.from_inv_mass(torch.tensor([1.0, 100.0], dtype=F64))
    p, ok, rho = _t([1.0, -0.05]), _t([1.0, 1.0]), _t([1.0, 1.0])
    assert not nuts.uturn(ok, p, rho).item()
    assert nuts.uturn(metric.velocity(ok), metric.velocity(p), rho).item()
    assert nuts.merge_turning(metric, ok, ok, rho - p, p, p, p).item()


def test_merge_turning_checks_across_the_halves():
    """Stan >= 2.26: a join whose two ends agree with the total momentum can still turn
    between the halves. Hand-worked: a = leaves (1, 0), (0, 1); b = leaves (-1, 0.2), (1, 0).
    The ends (1, 0) and (1, 0) agree with rho = (1, 1.2), but a plus b's first leaf sums to
    (0, 1.2), with which the velocity (1, 0) at a's start has dot product 0: turned."""
    metric = Metric.identity(torch.zeros(1, 2, dtype=F64))
    a = [_t([1.0, 0.0]), _t([0.0, 1.0])]
    b = [_t([-1.0, 0.2]), _t([1.0, 0.0])]
    rho_a, rho_b = a[0] + a[1], b[0] + b[1]
    whole = nuts.uturn(a[0], b[1], rho_a + rho_b)
    assert not whole.item()  # the two ends alone see no U-turn
    assert nuts.uturn(a[0], b[0], rho_a + b[0]).item()  # a plus b's first leaf turns
    assert nuts.merge_turning(metric, a[0], a[1], rho_a, b[0], b[1], rho_b).item()
    # a straight trajectory never turns
    s = _t([1.0, 0.5])
    assert not nuts.merge_turning(metric, s, s, 2 * s, s, s, 2 * s).item()


def test_checkpoint_levels_by_hand():
    # leaf: (lo, hi). Even leaves store at hi and check nothing (lo = hi + 1); leaf 7 = 0b111
    # ends subtrees of sizes 2, 4, 8 started at the leaves stored at levels 2, 1, 0.
    expected = {0: (1, 0), 1: (0, 0), 2: (2, 1), 3: (0, 1), 4: (2, 1), 5: (1, 1), 6: (3, 2)}
    expected[7] = (0, 2)
    for leaf, levels in expected.items():
        assert nuts.checkpoint_levels(leaf) == levels, leaf


def _recursive_turning(metric, ps, n):
    """Reference: every aligned subtree of >= 2 leaves ending at leaf n, halves joined by
    merge_turning, as Stan's recursive build_tree checks them."""
    turned = torch.zeros(ps.shape[1], dtype=torch.bool)
    size = 2
    while (n + 1) % size == 0:
        start, mid = n + 1 - size, n + 1 - size // 2
        a, b = ps[start:mid], ps[mid : n + 1]
        turned |= nuts.merge_turning(metric, a[0], a[-1], a.sum(0), b[0], b[-1], b.sum(0))
        size *= 2
    return turned


@pytest.mark.parametrize("dense", [False, True])
def test_iterative_checks_match_the_recursive_tree(dense):
    """The checkpointed, iterative check at each leaf of a depth-4 subtree equals checking
    every completed sub-subtree recursively, on random momenta with a random metric; so does
    the compiled loop's windowed check."""
    g = _gen(3)
    chains, dim, depth = 200, 3, 4
    if dense:
        a = torch.randn(dim, dim, generator=g, dtype=F64)
        metric = Metric.from_inv_mass(a @ a.T + 0.5 * torch.eye(dim, dtype=F64))
    else:
        metric = Metric.from_inv_mass(torch.rand(dim, generator=g, dtype=F64) + 0.1)
    # momenta drifting slowly, so that some subtrees turn and others do not
    steps = 0.7 * torch.randn(2**depth, chains, dim, generator=g, dtype=F64)
    ps = steps.cumsum(0) + torch.randn(chains, dim, generator=g, dtype=F64)
    ck = [torch.zeros(chains, depth, dim, dtype=F64) for _ in range(3)]
    rho, p_prev = torch.zeros(chains, dim, dtype=F64), torch.zeros(chains, dim, dtype=F64)
    seen = set()
    for n in range(2**depth):
        p = ps[n]
        lo, hi = nuts.checkpoint_levels(n)
        if n % 2 == 0:
            ck[0][:, hi], ck[1][:, hi], ck[2][:, hi] = rho, p, p_prev
        got = nuts.subtree_turning(metric, lo, hi, *ck, rho, p, p_prev)
        want = _recursive_turning(metric, ps, n)
        assert torch.equal(got, want), n
        # the compiled loop's levels: scalar tensors, or one per chain; checked on a window
        # of nuts.WINDOW levels (leaves 7 and 15 end subtrees at 3 and 4: every level)
        for shape in ((), (chains,)):
            lo_t, hi_t = (torch.full(shape, v, dtype=torch.long) for v in (lo, hi))
            got = nuts._turning_in_window(metric, lo_t, hi_t, ck, rho, p, p_prev)
            assert torch.equal(got, want), (n, shape)
        seen |= set(want.tolist())
        rho, p_prev = rho + p, p
    assert seen == {True, False}  # both outcomes exercised


# -- how the proposal is chosen ---------------------------------------------------------------


def test_multinomial_weights_on_a_hand_worked_tree():
    """Start leaf weight 1, a first doubling with one leaf of weight 3, a second with leaves of
    weights 2 and 6, a third with leaves 1, 1, 1, 1 (weights exp(-H) relative to the start).

    Within the second subtree: the 6-leaf replaces the 2-leaf w.p. 6/8. Between subtrees:
    3 vs 1 -> taken w.p. 1; 8 vs 4 -> taken w.p. 1; 4 vs 12 -> taken w.p. 1/3. So the final
    pick is: start 0, 3-leaf 0, 2-leaf 2/3 * 2/8, 6-leaf 2/3 * 6/8, each 1-leaf 1/3 * 1/4.
    Each decision is checked on both sides of its threshold."""
    lg = lambda w: torch.tensor([math.log(w)], dtype=F64)  # noqa: E731
    eps = 1e-9

    def takes(fn, *args, prob):
        below, _ = _pair(fn(*args, torch.tensor([max(prob - eps, 0.0)], dtype=F64)))
        above, _ = _pair(fn(*args, torch.tensor([min(prob + eps, 1 - eps)], dtype=F64)))
        assert below.item() and (prob >= 1 or not above.item())

    def _pair(res):
        return res if isinstance(res, tuple) else (res, None)

    # within a subtree: first leaf always taken, then with probability w / (W + w)
    take, total = nuts.uniform_progressive(
        torch.tensor([-math.inf], dtype=F64), lg(2), _t(0.999)[0]
    )
    assert take.item() and total.item() == pytest.approx(math.log(2))
    takes(nuts.uniform_progressive, lg(2), lg(6), prob=6 / 8)
    take, total = nuts.uniform_progressive(lg(2), lg(6), _t(0.5)[0])
    assert total.item() == pytest.approx(math.log(8))
    # four equal leaves: the k-th replaces with probability 1/k, so each ends with 1/4
    for k, w_before in ((2, 1), (3, 2), (4, 3)):
        takes(nuts.uniform_progressive, lg(w_before), lg(1), prob=1 / k)
    # between subtrees: biased towards the new one
    takes(nuts.biased_progressive, lg(1), lg(3), prob=1.0)
    takes(nuts.biased_progressive, lg(4), lg(8), prob=1.0)
    takes(nuts.biased_progressive, lg(12), lg(4), prob=1 / 3)
    # the final pick's distribution, composed from those probabilities, is a distribution
    final = [0, 0, 2 / 3 * 2 / 8, 2 / 3 * 6 / 8] + [1 / 3 / 4] * 4
    assert sum(final) == pytest.approx(1.0)


# -- the kernel -------------------------------------------------------------------------------


def _run(target, x0, step, n, inv_mass=None, seed=0, **kw):
    state = kernels.init(target, x0)
    g = _gen(seed)
    xs, infos = [], []
    for _ in range(n):
        state, info = nuts.nuts_step(target, state, step, g, inv_mass=inv_mass, **kw)
        xs.append(state.x)
        infos.append(info)
    return torch.stack(xs, 1), infos


def test_info_counts_and_masking():
    """Per-chain depth, leapfrog counts and gradient counts agree; depth is capped. Chains
    step in lock step with finished ones masked (fixed shapes, as NumPyro's vectorized
    chains): the target sees one call of every row per leaf of the longest tree, and
    ``grad_evals`` counts each chain's real leaves, the ones that entered its tree."""
    calls = []

    class Counting(densities.Gaussian):
        def _value_and_score(self, x):
            calls.append(x.shape[0])
            return super()._value_and_score(x)

    var = torch.logspace(0, 2, 10, dtype=F64)
    target = Counting(torch.zeros(10, dtype=F64), torch.diag(var))
    x0 = target.sample(32, generator=_gen(1), dtype=F64)
    state = kernels.init(target, x0)
    calls.clear()
    _, info = nuts.nuts_step(target, state, 0.3, _gen(2))
    steps = info.extra["n_leapfrog"]
    assert info.grad_evals.dtype == torch.long and torch.equal(info.grad_evals, steps)
    assert calls == [32] * steps.max().item()  # lock step: one call per leaf of the longest
    assert (steps.min() < steps.max()).item()  # chains did finish at different times
    depth = info.extra["tree_depth"]
    assert ((steps >= 2**depth - 1) & (steps <= 2 ** (depth + 1) - 1)).all()
    assert info.extra["energy"].shape == (32,)
    _, info = nuts.nuts_step(target, state, 0.01, _gen(2), max_tree_depth=3)
    assert (info.extra["tree_depth"] == 3).all() and (info.extra["n_leapfrog"] == 7).all()
    with pytest.raises(ValueError, match="max_tree_depth"):
        nuts.nuts_step(target, state, 0.1, _gen(2), max_tree_depth=0)


def test_divergence_is_flagged_and_rejected():
    target = densities.Gaussian(torch.zeros(2, dtype=F64), torch.diag(_t(1.0, 1e-4)))
    x0 = target.sample(16, generator=_gen(1), dtype=F64)
    state = kernels.init(target, x0)
    new, info = nuts.nuts_step(target, state, 5.0, _gen(2))
    assert info.diverged.all()
    # the first leaf diverges: the chain stays where it was
    assert torch.equal(new.x, state.x) and (info.extra["n_leapfrog"] == 1).all()


def _correlated(dim=5, condition=20.0):
    g = _gen(7)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=F64))
    cov = q @ torch.diag(torch.logspace(0, math.log10(condition), dim, dtype=F64)) @ q.T
    return densities.Gaussian(torch.linspace(-1, 1, dim, dtype=F64), cov)


def test_leaves_gaussians_invariant():
    """100-D diagonal Gaussian (with its metric) and a correlated 5-D one (unit metric)."""
    var = torch.logspace(0, 2, 100, dtype=F64)
    target = densities.Gaussian(torch.zeros(100, dtype=F64), torch.diag(var))
    x0 = target.sample(32, generator=_gen(1), dtype=F64)
    xs, _ = _run(target, x0, 0.6, 150, inv_mass=var)
    # 4,800 draws: min ESS over 100 coordinates ~900-2,000 (the 5-MCSE tolerance scales with it)
    assert_moments(xs, target.mean, var, min_ess=700)
    target = _correlated()
    x0 = target.sample(32, generator=_gen(1), dtype=F64)
    xs, infos = _run(target, x0, 0.4, 250)
    assert_moments(xs, target.mean, target.cov.diagonal(), min_ess=1000)
    assert not any(i.diverged.any() for i in infos)


def test_leaves_a_mixture_invariant():
    target = densities.GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.5, 0.5]], [0.5, 0.7])
    x0 = target.sample(64, generator=_gen(1), dtype=F64)
    xs, _ = _run(target, x0, 0.4, 400)
    assert_moments(xs, target.mean.to(F64), target.cov.diagonal().to(F64), min_ess=1000)


def _mixture_1d():
    return densities.GaussianMixture([0.3, 0.7], [[-1.5], [1.0]], [0.25, 0.6])


def assert_detailed_balance(step, chains=40000, seed=11):
    """From exact draws x0 ~ p of a 1-D mixture, one transition x1 = step(state, generator):
    detailed balance says the pair (x0, x1) is exchangeable. With independent chains, the
    bin-pair counts N_ij are tested for symmetry (Bowker's test, chi-square with one degree of
    freedom per pair of bins that saw moves) and x1's bin counts against the exact bin
    probabilities (Pearson's chi-square); both must have p > 1e-4."""
    target = _mixture_1d()
    x0 = target.sample(chains, generator=_gen(seed), dtype=F64)
    new, _ = step(target, kernels.init(target, x0), _gen(seed + 1))
    assert (new.x != x0).any(-1).double().mean() > 0.5  # it does move
    edges = torch.tensor([-math.inf, -1.8, -1.5, -1.2, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, math.inf])
    bins = lambda x: torch.bucketize(x[:, 0].float(), edges[1:-1])  # noqa: E731
    k = len(edges) - 1
    pair = torch.zeros(k, k)
    pair.index_put_((bins(x0), bins(new.x)), torch.ones(chains), accumulate=True)
    off = torch.triu(torch.ones(k, k, dtype=torch.bool), 1) & ((pair + pair.T) > 0)
    stat = ((pair - pair.T)[off] ** 2 / (pair + pair.T)[off]).sum().item()
    assert stats.chi2.sf(stat, int(off.sum())) > 1e-4, stat
    # exact bin probabilities of the mixture
    w, mu, sd = _t(0.3, 0.7), _t(-1.5, 1.0), _t(0.25, 0.6).sqrt()
    cdf = (w * torch.special.ndtr((edges.double()[:, None] - mu) / sd)).sum(-1)
    probs = cdf.diff()
    counts = torch.bincount(bins(new.x), minlength=k).double()
    pearson = ((counts - chains * probs) ** 2 / (chains * probs)).sum().item()
    assert stats.chi2.sf(pearson, k - 1) > 1e-4, (counts, chains * probs)


def test_detailed_balance_on_a_1d_mixture():
    assert_detailed_balance(lambda t, s, g: nuts.nuts_step(t, s, 0.3, g, max_tree_depth=6))


def test_detailed_balance_test_has_power():
    """The same test rejects a kernel that does not leave p invariant: NUTS followed by half a
    step along the score (a small bias of the kind a wrong weight would cause)."""

    def biased(target, state, g):
        new, info = nuts.nuts_step(target, state, 0.3, g, max_tree_depth=6)
        return kernels.init(target, new.x + 0.3 * new.score), info

    with pytest.raises(AssertionError):
        assert_detailed_balance(biased)


def run_nuts_and_check_moments(**options) -> mcmc.MCMCResult:
    """End to end through the runner: Stan's warm-up (step size to 0.8 by dual averaging, the
    diagonal mass in the windows), then the draws' moments on an ill-scaled Gaussian
    (``options`` to ``mcmc.sample``; test_cuda.py runs it on a GPU)."""
    var = torch.logspace(0, 2, 20, dtype=F64)
    target = densities.Gaussian(torch.ones(20, dtype=F64), torch.diag(var))
    res = mcmc.sample(
        target, "nuts", chains=16, steps=300, warmup=300, dtype=F64, generator=_gen(5), **options
    )
    samples, inv_mass = res.samples.cpu(), res.inv_mass.cpu()
    assert_moments(samples, target.mean, var, min_ess=1000)
    assert (mcmc.rhat(samples) < 1.02).all()
    # the adapted metric is close to the true variances (pooled over chains and windows)
    ratio = inv_mass.diagonal() if inv_mass.ndim == 2 else inv_mass
    assert ((ratio / var).log().abs() < math.log(1.6)).all(), ratio / var
    assert res.extra["tree_depth"].shape == (16, 300)
    assert (res.extra["n_leapfrog"].float().mean() < 20).item()  # a good metric: short trees
    return res


def test_runner_adapts_nuts_and_recovers_moments():
    run_nuts_and_check_moments()


@pytest.mark.parametrize("warmup", [150, 1000, 2000])
def test_mass_windows_are_stans(warmup):
    """The runner's slow windows for NUTS and HMC are Stan's (75 / 25 doubling / 50), as
    NumPyro's ``build_adaptation_schedule`` writes them."""
    from scorelab.mcmc.adaptation import mass_windows

    hmc_util = pytest.importorskip("numpyro.infer.hmc_util")
    stan = [(w.start, w.end + 1) for w in hmc_util.build_adaptation_schedule(warmup)][1:-1]
    assert mass_windows(warmup) == stan
    assert stan[0] == (75, 100) and stan[-1][1] == warmup - 50
