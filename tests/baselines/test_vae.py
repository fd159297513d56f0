"""The VAE: ELBO <= log p on data with a known density, IWAE tightening with K, and the model
contract (config round trip, shapes, errors)."""

from __future__ import annotations

import pytest
import torch

from scorelab.baselines import VAE, from_config, vae_loss
from scorelab.densities import Gaussian
from tests.baselines.helpers import Z, fit, paired_mean_se

# A correlated 2-D Gaussian: log p(x) is exact, and a VAE with a 2-D latent can represent it
# (a linear decoder), so a trained VAE's ELBO should come close to it from below.
TRUE = Gaussian([1.0, -0.5], [[1.0, 0.6], [0.6, 0.8]])


@pytest.fixture(scope="module")
def trained() -> tuple[VAE, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = TRUE.sample(20_000, generator=g)
    vae = VAE((2,), latent_dim=2, hidden=64, depth=2, seed=0)
    fit(vae, vae_loss, x, steps=1000, lr=3e-3)
    held = TRUE.sample(2000, generator=torch.Generator().manual_seed(1))
    return vae.eval(), held


def test_elbo_is_below_the_exact_log_likelihood(trained):
    vae, x = trained
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        elbo = vae.elbo(x, g)
    exact = TRUE.log_prob(x)
    gap, se = paired_mean_se(elbo - exact)
    # E_data[ELBO] <= E_data[log p_theta] <= E_data[log p] (Jensen, then Gibbs' inequality), so
    # the mean gap over 2000 held-out points may exceed 0 only by sampling error: z = 5 SE.
    assert gap <= Z * se, (gap, se)
    # ... and the VAE fits: the gap is a small fraction of the entropy (~2.2 nats); measured
    # -0.017 +- 0.017 nats. 0.15 nats allows a worse optimizer run, not a failed fit.
    assert gap > -0.15, gap


def test_iwae_bound_tightens_with_k(trained):
    vae, x = trained
    x = x[:1000]
    g = torch.Generator().manual_seed(3)
    bounds = {k: vae.log_likelihood(x, k=k, generator=g) for k in (1, 10, 100)}
    exact = TRUE.log_prob(x)
    # E IWAE_K is nondecreasing in K (Burda et al. 2016, Theorem 1): each paired difference
    # (same x, independent draws) may fall below 0 only by sampling error, z = 5 SE.
    for lo, hi in ((1, 10), (10, 100)):
        diff, se = paired_mean_se(bounds[hi] - bounds[lo])
        assert diff >= -Z * se, (lo, hi, diff, se)
    # and every bound stays below log p(x) up to sampling error
    for k, b in bounds.items():
        gap, se = paired_mean_se(b - exact)
        assert gap <= Z * se, (k, gap, se)


def test_iwae_tightens_strictly_when_the_posterior_is_poor():
    # an untrained encoder: q(z | x) is far from p(z | x), so K = 100 gains over K = 1; the
    # gain must be significant at z = 5 and sizable (measured 0.30 nats, SE 0.04).
    vae = VAE((2,), latent_dim=2, hidden=32, depth=1, decoder_std=0.5, seed=1).eval()
    x = TRUE.sample(500, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(5)
    one, hundred = (
        vae.log_likelihood(x, k=1, generator=g),
        vae.log_likelihood(x, k=100, generator=g),
    )
    gain, se = paired_mean_se(hundred - one)
    assert gain > Z * se and gain > 0.1, (gain, se)


def test_iwae_with_k_1_is_the_elbo_in_expectation(trained):
    vae, x = trained
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        elbo = vae.elbo(x, g)  # closed-form KL
    one = vae.log_likelihood(x, k=1, generator=g)  # sampled KL: same expectation
    diff, se = paired_mean_se(one - elbo)
    assert abs(diff) <= Z * se, (diff, se)


def test_calibrated_decoder_uses_the_batch_optimal_std():
    # sigma-VAE (Rybkin et al. 2021): the training loss is -ELBO at s_j^2 = batch mean of
    # (x_j - m_j(z))^2, the maximizer over s of the Gaussian ELBO; so it is below the loss at
    # any fixed s, with the same weights and draws (exact up to float rounding)
    x = TRUE.sample(64, generator=torch.Generator().manual_seed(7))
    eps = torch.randn(64, 2, generator=torch.Generator().manual_seed(8))
    calibrated = VAE((2,), seed=4).eval()  # eval: the running average is not updated
    best = calibrated(x, eps).item()
    for s in (0.05, 0.2, 0.5, 1.0, 2.0):
        fixed = VAE((2,), decoder_std=s, seed=4).eval()
        assert best <= fixed(x, eps).item() + 1e-5, s
    # in training mode the running average moves toward the batch's variance
    before = calibrated.calibrated_var.clone()
    calibrated.train()(x, eps)
    assert not torch.equal(before, calibrated.calibrated_var)


def test_contract_config_shapes_and_sampling():
    vae = VAE((1, 8, 8), latent_dim=4, arch="conv", channels=8, dequantize=0.125, seed=3)
    same = from_config(vae.config())
    same.load_state_dict(vae.state_dict())
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    g = torch.Generator().manual_seed(0)
    assert vae.config()["kind"] == "vae" and vae.event_shape == (1, 8, 8)
    torch.testing.assert_close(vae.elbo(x, torch.Generator().manual_seed(1)),
                               same.elbo(x, torch.Generator().manual_seed(1)))  # fmt: skip
    assert vae.sample(7, generator=g).shape == (7, 1, 8, 8)
    assert vae.sample(3, generator=g, mean=True).shape == (3, 1, 8, 8)
    a = vae.sample(4, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a, vae.sample(4, generator=torch.Generator().manual_seed(9)))
    loss = vae_loss(vae, x, g)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_bernoulli_decoder_on_binary_data():
    vae = VAE((6,), latent_dim=2, likelihood="bernoulli", seed=0)
    x = (torch.rand(10, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float() * 2 - 1
    ll = vae.log_likelihood(x, k=5)
    assert (ll <= 0).all()  # a probability mass: log P(x) <= 0
    s = vae.sample(20, generator=torch.Generator().manual_seed(1))
    assert set(s.unique().tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"likelihood": "poisson"}, "unknown likelihood 'poisson'"),
        ({"decoder_std": -1.0}, "decoder_std must be 'calibrated', 'learned' or a positive"),
        ({"arch": "conv"}, "arch 'conv' needs images"),
        ({"latent_dim": 0}, "latent_dim must be an int >= 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE((2,), **kwargs)


def test_bad_input_shape_and_labels_are_refused():
    vae = VAE((2,))
    with pytest.raises(ValueError, match=r"models examples of shape \(2,\)"):
        vae.elbo(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="unconditional"):
        vae_loss(vae, torch.zeros(4, 2), None, torch.zeros(4, dtype=torch.long))
