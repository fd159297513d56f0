"""The GAN: one loss drives both players (simultaneous updates), it trains with the library's
trainer to cover the modes of a 2-D mixture, and the coverage metric flags collapse."""

from __future__ import annotations

import pytest
import torch

from scorelab.baselines import GAN, from_config, gan_loss, mode_coverage
from scorelab.data import Dataset, Normalization
from scorelab.densities import GaussianMixture
from scorelab.training import TrainConfig, Trainer

WEIGHTS = [0.4, 0.3, 0.2, 0.1]
MEANS = [[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]]
STD = 0.3
MIXTURE = GaussianMixture(WEIGHTS, MEANS, STD**2)
# 4 stds: a 2-D Gaussian puts exp(-8) ~ 3e-4 of its mass outside, and balls of this radius
# around modes 2.8 apart do not overlap
RADIUS = 4 * STD


def _grads(model: GAN, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {
        k: torch.zeros_like(p) if p.grad is None else p.grad.clone()
        for k, p in model.named_parameters()
    }


@pytest.mark.parametrize("kind", ["ns", "wgan-gp"])
def test_one_loss_gives_each_player_its_own_gradient(kind):
    # grad_D (L_D + L_G) == grad L_D and grad_G (L_D + L_G) == grad L_G: the combined loss
    # is a simultaneous gradient step of both players
    torch.manual_seed(0)
    model = GAN((2,), hidden=16, depth=2, loss=kind, seed=1).double()
    x = MIXTURE.sample(32, generator=torch.Generator().manual_seed(0)).double()
    z = torch.randn(32, model.latent_dim, dtype=torch.float64)
    u = torch.rand(32, dtype=torch.float64)
    combined = _grads(model, model(x, z, u))

    fake = model.generate(z)
    d_real, d_fake = model.discriminate(x), model.discriminate(fake.detach())
    if kind == "ns":
        penalty = 0.5 * model.r1_gamma * model._input_grad(x).square().sum(1).mean()
        loss_d = torch.nn.functional.softplus(-d_real).mean()
        loss_d = loss_d + torch.nn.functional.softplus(d_fake).mean() + penalty
        loss_g = torch.nn.functional.softplus(-model.discriminate(fake)).mean()
    else:
        x_hat = u[:, None] * x + (1 - u[:, None]) * fake.detach()
        gp = (model._input_grad(x_hat).norm(dim=1) - 1).square().mean()
        loss_d = d_fake.mean() - d_real.mean() + 10 * gp + 1e-3 * d_real.square().mean()
        loss_g = -model.discriminate(fake).mean()
    only_d, only_g = _grads(model, loss_d), _grads(model, loss_g)
    for name, g in combined.items():
        want = only_d[name] if name.startswith("discriminator") else only_g[name]
        torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-12, msg=name)


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = w.x + b has grad_x D = w everywhere, so the penalty is exactly 10 (|w| - 1)^2
    model = GAN((2,), loss="wgan-gp", drift=0.0, seed=0).double()
    model.discriminator = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0)).double()
    with torch.no_grad():
        model.discriminator[0].weight.copy_(torch.tensor([[3.0, 4.0]]))
    x = torch.randn(16, 2, dtype=torch.float64)
    z = torch.randn(16, model.latent_dim, dtype=torch.float64)
    with torch.no_grad():
        fake = model.generate(z)
        d = model.discriminate
        want = (d(fake).mean() - d(x).mean() + 10 * (5 - 1) ** 2) - d(fake).mean()
    torch.testing.assert_close(model(x, z, torch.rand(16, dtype=torch.float64)), want)


def test_trained_gan_covers_the_modes_with_their_weights(tmp_path):
    # the library's trainer (one AdamW step on L_D + L_G per step), NS loss with R1
    x = MIXTURE.sample(10_000, generator=torch.Generator().manual_seed(0))
    data = Dataset(x, None, Normalization.identity(), "mixture")
    cfg = TrainConfig(model="gan", steps=1500, batch_size=128, lr=2e-3, out=str(tmp_path),
                      checkpoint_every=10**6, log_every=10**6,
                      net_kwargs={"hidden": 64, "depth": 2})  # fmt: skip
    trainer = Trainer(cfg, data=data)
    losses = trainer.run(cfg.steps, progress=False)
    model = trainer.ema_model()
    samples = model.sample(1000, generator=torch.Generator().manual_seed(1))
    cov = mode_coverage(samples, MEANS, WEIGHTS, RADIUS, z=4.0, normalize=True)
    # Among the samples within 4 stds of a mode, mode k's share has binomial standard error
    # sqrt(w (1 - w) / n) (n ~ 700-900); every share must be within 4 SE of its weight (0.05
    # for w = 0.4, 0.04 for w = 0.1): no mode dropped, none hogging. Measured shares
    # 0.387, 0.291, 0.188, 0.133 of n = 924 on-mode samples.
    assert cov.ok, cov.report()
    # A continuous generator of a connected latent puts some mass between separated modes
    # (measured 0.076 after 1500 steps, vs 3e-4 for the mixture); most samples are on a mode.
    assert cov.off_mode < 0.35, cov.report()
    # the logged loss L_D + L_G is finite and near the NS equilibrium 2 ln 2 + ln 2 ~ 2.08
    tail = sum(losses[-100:]) / 100
    assert 1.5 < tail < 2.6, tail


def test_coverage_flags_a_collapsed_sample_set():
    g = torch.Generator().manual_seed(2)
    exact = MIXTURE.sample(1000, generator=g)
    cov = mode_coverage(exact, MEANS, WEIGHTS, RADIUS)
    assert cov.ok and not cov.collapsed and cov.covered == 4, cov.report()
    # all mass on the heaviest mode: modes 1-3 missing
    collapsed = torch.tensor(MEANS[0]) + STD * torch.randn(1000, 2, generator=g)
    cov = mode_coverage(collapsed, MEANS, WEIGHTS, RADIUS)
    assert cov.collapsed and cov.missing == [1, 2, 3] and cov.excess == [0], cov.report()
    # the lightest mode dropped (the others keep their relative weights): flagged too
    keep = exact[torch.cdist(exact, torch.tensor(MEANS)).argmin(1) != 3]
    cov = mode_coverage(keep, MEANS, WEIGHTS, RADIUS, normalize=True)
    assert cov.missing == [3], cov.report()
    with pytest.raises(ValueError, match="weights must be"):
        mode_coverage(exact, MEANS, [0.5, 0.5, 0.5, 0.5], RADIUS)


def test_contract_conv_gan_and_errors():
    gan = GAN((1, 8, 8), arch="conv", channels=8, latent_dim=4, out_activation="tanh", seed=0)
    same = from_config(gan.config())
    same.load_state_dict(gan.state_dict())
    a = gan.sample(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, same.sample(6, generator=torch.Generator().manual_seed(0)))
    assert a.shape == (6, 1, 8, 8) and a.abs().max() < 1
    loss = gan_loss(gan, torch.rand(4, 1, 8, 8) * 2 - 1, torch.Generator().manual_seed(1))
    assert loss.ndim == 0 and torch.isfinite(loss)
    with pytest.raises(ValueError, match="unknown GAN loss 'hinge'"):
        GAN((2,), loss="hinge")
    with pytest.raises(ValueError, match="gan_loss trains a GAN"):
        gan_loss(torch.nn.Linear(2, 2), torch.zeros(3, 2))


def test_wgan_gp_updates_the_critic_n_critic_times_per_generator_update(tmp_path):
    """The trainer's update phases: one WGAN-GP step is 5 critic updates then 1 generator
    update (Adam's per-parameter step counts say so), with betas (0, 0.9); the NS GAN keeps one
    simultaneous update of both."""
    x = torch.randn(512, 2, generator=torch.Generator().manual_seed(0))
    data = Dataset(x, None, Normalization.identity(), "gaussian")
    for loss, critic, gen in (("wgan-gp", 5, 1), ("ns", 1, 1)):
        cfg = TrainConfig(model="gan", steps=2, batch_size=32, out=str(tmp_path / loss),
                          net_kwargs={"loss": loss, "hidden": 16})  # fmt: skip
        trainer = Trainer(cfg, data=data)
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.train_step()
        model, state = trainer.model, trainer.opt.state
        assert {int(state[p]["step"]) for p in model.discriminator.parameters()} == {critic}
        assert {int(state[p]["step"]) for p in model.generator.parameters()} == {gen}
        assert trainer.step == 1
        assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items())
        if loss == "wgan-gp":
            assert {g["betas"] for g in trainer.opt.param_groups} == {(0.0, 0.9)}
