"""E-BFMI against ArviZ, the verdict's rules, and the NUTS diagnostics in MCMCResult."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scorelab import densities, mcmc
from scorelab.mcmc import diagnostics
from scorelab.mcmc.runner import MCMCResult

F64 = torch.float64


def test_bfmi_matches_arviz():
    arviz = pytest.importorskip("arviz")
    rng = np.random.default_rng(0)
    # an AR(1) energy per chain: strong autocorrelation gives low E-BFMI
    e = np.zeros((4, 500))
    for t in range(1, 500):
        e[:, t] = np.array([0.0, 0.5, 0.9, 0.99]) * e[:, t - 1] + rng.standard_normal(4)
    got = diagnostics.bfmi(torch.from_numpy(e))
    np.testing.assert_allclose(got.numpy(), arviz.bfmi(e), rtol=1e-12)
    assert got[0] > 1.5 and got[3] < 0.3  # iid: ~2; random-walk-like: small
    with pytest.raises(ValueError, match="energy must be"):
        diagnostics.bfmi(torch.zeros(5))


def _result(samples, divergences=None, extra=None, kernel="nuts", max_tree_depth=10):
    chains = samples.shape[0]
    return MCMCResult(
        samples=samples,
        accept_rate=torch.full((chains,), 0.9),
        step_size=0.1,
        grad_evals=10,
        divergences=torch.zeros(chains, dtype=torch.long) if divergences is None else divergences,
        kernel=kernel,
        inv_mass=None,
        wall_time=1.0,
        extra=extra or {},
        max_tree_depth=max_tree_depth,
    )


def test_verdict_passes_iid_draws_and_fails_each_rule():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 500, 2, generator=g, dtype=F64)
    energy = torch.randn(4, 500, generator=g, dtype=F64)
    checks = diagnostics.verdict(x, 0, energy)
    assert [c.name for c in checks] == [
        "max R-hat", "min bulk ESS", "min tail ESS", "divergences", "min E-BFMI"
    ]  # fmt: skip
    assert all(c.passed for c in checks)
    shifted = x.clone()
    shifted[0] += 1.0  # one chain elsewhere: R-hat fails
    assert not diagnostics.verdict(shifted)[0].passed
    assert not diagnostics.verdict(x[:, :40])[1].passed  # 160 draws: ESS < 400
    assert not diagnostics.verdict(x, 3, energy)[3].passed
    walk = energy.cumsum(1)  # random-walk energy: E-BFMI ~ 0
    assert not diagnostics.verdict(x, 0, walk)[4].passed


def test_report_shows_trees_divergences_bfmi_and_verdict():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 300, 2, generator=g)
    depth = torch.randint(1, 4, (4, 300), generator=g)
    depth[0, :5] = 10
    diverged = torch.zeros(4, 300, dtype=torch.bool)
    diverged[2, 7] = True
    extra = {"tree_depth": depth, "energy": torch.randn(4, 300, generator=g).cumsum(1),
             "diverged": diverged}  # fmt: skip
    res = _result(x, torch.tensor([0, 0, 1, 0]), extra)
    assert res.max_depth_hits() == 5
    hist = res.tree_depth_histogram()
    assert sum(hist.values()) == 1200 and hist[10] == 5
    where, pos = res.divergent_draws()
    assert where.tolist() == [[2, 7]] and torch.equal(pos[0], x[2, 7])
    text = res.report()
    assert "hit max_tree_depth 10" in text and "chain 2 draw 7" in text
    assert "E-BFMI below 0.3" in text and "verdict: FAIL" in text
    # a non-Hamiltonian kernel's verdict has no divergence or E-BFMI rule
    assert [c.name for c in _result(x, kernel="mala").verdict()][-1] == "min tail ESS"


def test_nuts_on_a_gaussian_passes_the_verdict():
    target = densities.Gaussian(torch.zeros(5, dtype=F64), torch.eye(5, dtype=F64))
    # 400 draws a chain: R-hat's folded (variance) part needs ESS(x^2) well above 100 a chain
    # to stay under 1.01 (NUTS's ESS for x^2 on a Gaussian is ~0.3-0.5 of the draws)
    res = mcmc.sample(target, "nuts", chains=8, steps=400, warmup=200, dtype=F64,
                      generator=torch.Generator().manual_seed(2), progress=False)  # fmt: skip
    assert all(c.passed for c in res.verdict()), res.verdict()
    assert "verdict: PASS" in res.report()


def test_every_kernel_records_where_it_diverged():
    """HMC (not only NUTS) flags its divergent draws: with a fixed step too large for the
    funnel's neck, each counted divergence (thin=1) is one flagged draw, and they sit in the
    neck (v = x[0] below the draws' median), as in Stan's pair plots."""
    res = mcmc.sample(densities.Funnel(3), "hmc", chains=8, steps=200, warmup=0, step_size=0.9,
                      n_leapfrog=5, generator=torch.Generator().manual_seed(0),
                      progress=False)  # fmt: skip
    where, pos = res.divergent_draws()
    assert res.divergences.sum() > 0
    assert torch.equal(torch.bincount(where[:, 0], minlength=8), res.divergences)
    assert pos[:, 0].median() < res.samples[..., 0].median()
