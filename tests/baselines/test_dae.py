"""The denoising autoencoder: it denoises, its implied score is the exact smoothed score of a
Gaussian, and its Langevin sampler lands on the law its docstring predicts."""

from __future__ import annotations

import pytest
import torch

from scorelab.baselines import DAE, dae_loss, from_config
from scorelab.densities import Gaussian
from scorelab.errors import DivergenceError
from tests.baselines.helpers import Z, fit, paired_mean_se

MEAN = torch.tensor([0.5, -1.0])
COV = torch.tensor([[1.0, 0.5], [0.5, 0.6]])
TRUE = Gaussian(MEAN, COV)
SIGMA = 0.5


@pytest.fixture(scope="module")
def trained() -> DAE:
    x = TRUE.sample(20_000, generator=torch.Generator().manual_seed(0))
    dae = DAE((2,), sigma=SIGMA, sigma_data=round(float(x.std()), 4), hidden=64, depth=2)
    fit(dae, dae_loss, x, steps=1000, lr=3e-3)
    return dae.eval()


def _noisy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = TRUE.sample(n, generator=g)
    return x, x + SIGMA * torch.randn(x.shape, generator=g)


def test_dae_denoises_close_to_the_bayes_optimum(trained):
    x, noisy = _noisy(4000, 1)
    with torch.no_grad():
        err = (trained.reconstruct(noisy) - x).square().sum(1)
        best = (TRUE.denoise(noisy, SIGMA) - x).square().sum(1)  # E[x | noisy], exact
    noisy_err = (noisy - x).square().sum(1)
    # denoising helps: well below the noise's own error d sigma^2 = 0.5 (the exact posterior
    # mean reaches 0.337, a gain of 0.163; measured gain 0.163)
    gain, se = paired_mean_se(noisy_err - err)
    assert gain > Z * se and gain > 0.1, (gain, se)
    # and no denoiser beats the posterior mean: the excess error over it is >= 0 up to sampling
    # error, and small (measured 0.0003 +- 0.0003, 0.1% of the optimum); 0.02 allows a worse
    # optimizer run
    excess, se = paired_mean_se(err - best)
    assert -Z * se <= excess < 0.02, (excess, se)


def test_implied_score_matches_the_exact_smoothed_score(trained):
    # Tweedie / Alain & Bengio 2014: (r(x) - x) / sigma^2 -> grad log p_sigma(x)
    _, noisy = _noisy(4000, 2)
    with torch.no_grad():
        learned = trained.score(noisy)
    exact = TRUE.smoothed_score(noisy, SIGMA)
    rel = (learned - exact).square().sum(1).mean() / exact.square().sum(1).mean()
    # relative squared error of the score field where p_sigma has its mass; equals the excess
    # denoising error above divided by sigma^4 E|score|^2 (measured 0.004)
    assert rel < 0.05, rel


def test_langevin_samples_follow_the_predicted_law(trained):
    # ULA on p_sigma = N(m, C), C = S + sigma^2 I, with step h has stationary covariance
    # c / (1 - h / (2c)) per eigenvalue c; the final Tweedie step applies A = S C^-1, so the
    # samples are N(m, A V A^T) exactly for the exact score (docstring of scorelab.baselines.dae)
    n = 4000
    samples = trained.sample(n, generator=torch.Generator().manual_seed(3))
    h = trained.step_scale * SIGMA**2
    c, q = torch.linalg.eigh(COV + SIGMA**2 * torch.eye(2))
    v = q @ torch.diag(c / (1 - h / (2 * c))) @ q.T
    a = COV @ torch.linalg.inv(COV + SIGMA**2 * torch.eye(2))
    want_cov = a @ v @ a.T
    got_mean, got_cov = samples.mean(0), samples.T.cov()
    se_mean = (want_cov.diag() / n).sqrt()
    # statistical error (z = 5 SE) plus 0.05 for the learned score's error (about 1% of the
    # score field, see above) accumulated along the chain
    assert ((got_mean - MEAN).abs() <= Z * se_mean + 0.05).all(), (got_mean, MEAN)
    se_cov = (want_cov.diag()[:, None] * want_cov.diag()[None, :] / n).sqrt() * 2**0.5
    assert ((got_cov - want_cov).abs() <= Z * se_cov + 0.05).all(), (got_cov, want_cov)


def test_gibbs_chain_contracts_as_the_docstring_says():
    # With the exact posterior mean of N(0, 1) data at sigma 0.5, r(y) = 0.8 y, and the chain
    # x <- r(x + sigma n) has stationary variance 0.64 * 0.25 / 0.36 = 0.444, not 1.
    dae = DAE((1,), sigma=0.5, sigma_data=1.0, hidden=8, depth=1, sampler="gibbs",
              sampler_steps=60, seed=0)  # fmt: skip
    with torch.no_grad():
        dae.net[1][-1].weight.zero_()  # F = 0: r = c_skip x = 0.8 x, the exact posterior mean
        dae.net[1][-1].bias.zero_()
    assert dae.c_skip == pytest.approx(0.8)
    s = dae.sample(4000, generator=torch.Generator().manual_seed(4))
    # after 60 steps the start is forgotten (0.8^60 ~ 1e-6); the variance of 4000 draws has
    # SE ~ var sqrt(2 / n) = 0.0099
    assert float(s.var()) == pytest.approx(0.444, abs=Z * 0.01)


def test_contract_and_errors():
    dae = DAE((1, 8, 8), arch="conv", channels=8, code_dim=16, sigma=0.3, sigma_data=0.6)
    same = from_config(dae.config())
    same.load_state_dict(dae.state_dict())
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(dae.reconstruct(x), same.reconstruct(x))
    s = dae.sample(2, generator=torch.Generator().manual_seed(0), steps=3)
    assert s.shape == (2, 1, 8, 8) and dae.nfe == dae.sampler_steps + 1
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        DAE((2,), sigma=0.0)
    with pytest.raises(ValueError, match="unknown DAE sampler"):
        DAE((2,), sampler="metropolis")
    exploding = DAE((2,), sigma=0.1, step_scale=1.0, sampler_steps=50, seed=0)
    with torch.no_grad():
        exploding.net[1][-1].bias.fill_(float("inf"))
    with pytest.raises(DivergenceError, match="step size"):
        exploding.sample(4, generator=torch.Generator().manual_seed(0))
