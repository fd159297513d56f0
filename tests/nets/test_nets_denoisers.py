"""Parameterization wrappers: Tweedie, preconditioning formulas, conservative fields, gradients,
determinism and configs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from scorelab.nets import (
    MLP,
    PARAMETERIZATIONS,
    EDMDenoiser,
    EnergyDenoiser,
    EpsDenoiser,
    ScoreDenoiser,
    UNet,
    build,
    from_config,
)
from scorelab.tweedie import score_from_denoised
from tests.nets.helpers import F64, example_x, small_mlp, small_model, small_unet

SIGMAS = torch.tensor([0.01, 0.3, 1.0, 5.0, 80.0], dtype=F64)


# -- Tweedie ------------------------------------------------------------------------------
@pytest.mark.parametrize("net", ["mlp", "unet"])
@pytest.mark.parametrize("parameterization", list(PARAMETERIZATIONS))
def test_tweedie_identity(parameterization, net):
    model = small_model(net, parameterization).double()
    x = example_x(net, batch=5, dtype=F64) * 2
    d = model(x, SIGMAS)
    s = model.score(x, SIGMAS)
    torch.testing.assert_close(s, score_from_denoised(x, d, SIGMAS), rtol=1e-9, atol=1e-9)


def test_score_and_eps_formulas():
    f = small_mlp(3).double()
    x = example_x("mlp", batch=5, dtype=F64)
    c_noise = SIGMAS.log() / 4
    col = SIGMAS[:, None]
    score = ScoreDenoiser(f).score(x, SIGMAS)
    torch.testing.assert_close(score, f(x, c_noise) / col, rtol=1e-12, atol=0)
    eps = EpsDenoiser(f)
    d = eps(x, SIGMAS)
    torch.testing.assert_close(d, x - col * f(x / (col**2 + 1).sqrt(), c_noise))
    c = eps.coefficients(torch.tensor(1.0, dtype=F64))
    assert c.c_skip == 1 and c.c_out == -1 and c.c_noise == 0
    assert c.c_in == pytest.approx(1 / math.sqrt(2), rel=1e-15)


# -- EDM preconditioning -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("sigma", "c_skip", "c_out", "c_in", "c_noise"),
    [
        # hand-computed with sigma_data = 0.5: sigma^2 + sd^2 = 0.26, 0.5, 4.25
        (0.1, 0.9615384615384615, 0.09805806756909202, 1.9611613513818403, -0.5756462732485114),
        (0.5, 0.5, 0.3535533905932738, 1.4142135623730951, -0.17328679513998632),
        (2.0, 0.058823529411764705, 0.48507125007266594, 0.48507125007266594, 0.1732867951399863),
    ],
)
def test_edm_coefficients(sigma, c_skip, c_out, c_in, c_noise):
    c = EDMDenoiser(small_mlp(2), sigma_data=0.5).coefficients(torch.tensor(sigma, dtype=F64))
    for got, want in zip(c, (c_skip, c_out, c_in, c_noise), strict=True):
        assert got.item() == pytest.approx(want, rel=1e-14, abs=1e-16)


def test_edm_limits():
    edm = EDMDenoiser(small_mlp(2), sigma_data=0.5)
    small = edm.coefficients(torch.tensor([1e-4, 1e-8], dtype=F64))
    assert (1 - small.c_skip).abs().max() < 1e-7  # c_skip -> 1
    assert small.c_out.abs().max() < 1e-3  # c_out -> 0, like sigma
    ratio = small.c_out / torch.tensor([1e-4, 1e-8], dtype=F64)
    torch.testing.assert_close(ratio, torch.ones(2, dtype=F64))
    big = edm.coefficients(torch.tensor(1e6, dtype=F64))
    assert big.c_skip < 1e-12  # c_skip -> 0: the network does all the work
    assert big.c_out == pytest.approx(0.5) and big.c_in * 1e6 == pytest.approx(1)
    # so D(x, sigma -> 0) -> x whatever the network does
    x = torch.randn(4, 2, dtype=F64)
    torch.testing.assert_close(edm.double()(x, 1e-9), x, rtol=0, atol=1e-7)


def test_edm_denoise_formula():
    f = small_unet().double()
    edm = EDMDenoiser(f, sigma_data=0.7)
    x = example_x("unet", dtype=F64)
    sigma = SIGMAS[:4]
    var = (sigma**2 + 0.49)[:, None, None, None]
    s4 = sigma[:, None, None, None]
    want = 0.49 / var * x + s4 * 0.7 / var.sqrt() * f(x / var.sqrt(), sigma.log() / 4)
    torch.testing.assert_close(edm(x, sigma), want, rtol=1e-12, atol=1e-12)


# -- energy: a conservative field ------------------------------------------------------------
def _jac(model, x0: torch.Tensor, sigma: float) -> torch.Tensor:
    def f(v):
        return model.score(v.reshape((1, *x0.shape)), sigma).reshape(-1)

    return jacobian(f, x0.reshape(-1))


@pytest.mark.parametrize("dim", [2, 3])
def test_energy_score_is_minus_grad_and_symmetric(dim):
    energy = EnergyDenoiser(small_mlp(dim, out_dim=1, depth=3)).double()
    x = torch.randn(6, dim, dtype=F64, generator=torch.Generator().manual_seed(1))
    sigma = torch.linspace(0.05, 3.0, 6, dtype=F64)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy.energy(xg, sigma).sum(), xg)
    torch.testing.assert_close(energy.score(x, sigma), -grad, rtol=1e-12, atol=1e-12)

    j = _jac(energy, x[0], 0.4)
    assert (j - j.T).abs().max() < 1e-10
    assert j.abs().max() > 1e-3  # not trivially zero
    direct = ScoreDenoiser(small_mlp(dim)).double()
    jd = _jac(direct, x[0], 0.4)
    assert (jd - jd.T).abs().max() > 1e-4  # a free score network is not conservative


def test_energy_unet_reduction_is_conservative():
    energy = EnergyDenoiser(small_unet(base_channels=4, groups=2)).double()
    x0 = torch.randn(1, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(2))
    j = _jac(energy, x0, 0.8)
    assert j.shape == (16, 16)
    assert (j - j.T).abs().max() < 1e-10
    assert j.abs().max() > 1e-3


def test_energy_matches_edm_at_zero_init():
    x = torch.randn(5, 3, dtype=F64)
    energy = build("mlp", "energy", dim=3).double()
    edm = build("mlp", "edm", dim=3).double()
    torch.testing.assert_close(energy(x, SIGMAS), edm(x, SIGMAS))


def test_energy_graph_only_when_grad_enabled():
    energy = EnergyDenoiser(small_mlp(2, out_dim=1))
    x = torch.randn(3, 2)
    assert energy(x, 0.5).requires_grad  # create_graph=True: trainable
    with torch.no_grad():
        s = energy.score(x, 0.5)
    assert not s.requires_grad and s.grad_fn is None
    with torch.inference_mode():
        x_inf = torch.randn(3, 2)
        with pytest.raises(RuntimeError, match=r"torch.inference_mode\(\) turns off"):
            energy.score(x_inf, 0.5)
    torch.testing.assert_close(energy.score(x_inf, 0.5), energy.score(x_inf.clone(), 0.5))


# -- gradients reach every parameter -------------------------------------------------------
@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("net", ["mlp", "unet"])
@pytest.mark.parametrize("parameterization", list(PARAMETERIZATIONS))
def test_gradients_reach_all_parameters(parameterization, net, labels):
    model = small_model(net, parameterization, num_classes=3 if labels else None)
    x0 = example_x(net)
    sigma = torch.tensor([0.1, 0.5, 1.0, 4.0])
    noisy = x0 + sigma.reshape(-1, *[1] * (x0.ndim - 1)) * torch.randn_like(x0)
    cond = torch.tensor([0, 1, 2, 1]) if labels else None
    loss = (model(noisy, sigma, cond) - x0).square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    # a scalar energy's output bias shifts u by a constant: it cannot change the score
    expected = ["net.out.bias"] if (parameterization, net) == ("energy", "mlp") else []
    assert missing == expected
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    table = model.net.embed.label.table.weight.grad if labels else None
    if labels:
        assert table[:3].abs().sum(1).min() > 0  # every used label learns
        assert table[3].abs().sum() == 0  # the "no label" token was not used


def test_null_label_learns_when_unconditional():
    model = small_model("mlp", "edm", num_classes=3)
    model(torch.randn(4, 3), 0.5).square().sum().backward()
    table = model.net.embed.label.table.weight.grad
    assert table[3].abs().sum() > 0 and table[:3].abs().sum() == 0


# -- determinism and configs -----------------------------------------------------------------
@pytest.mark.parametrize("factory", [lambda s: MLP(4, seed=s), lambda s: UNet(seed=s)])
def test_same_seed_same_init(factory):
    state = torch.get_rng_state()
    a, b, c = factory(0), factory(0), factory(1)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize(
    ("net", "parameterization", "kwargs"),
    [
        ("mlp", "edm", {"dim": 2, "sigma_data": 1.3, "embedding": "positional"}),
        ("mlp", "energy", {"dim": 2, "num_classes": 4}),
        ("unet", "eps", {"channel_mult": (1, 2, 2), "attention_resolutions": (4,), "seed": 3}),
        ("unet", "score", {"in_channels": 3, "num_classes": 10, "dropout": 0.1}),
    ],
)
def test_config_round_trip(net, parameterization, kwargs):
    model = build(net, parameterization, **kwargs)
    cfg = json.loads(json.dumps(model.config()))
    assert cfg["net"] == net and cfg["parameterization"] == parameterization
    again = from_config(cfg)
    assert type(again) is type(model) and again.config() == model.config()
    assert getattr(again, "sigma_data", None) == getattr(model, "sigma_data", None)
    sa, sb = model.state_dict(), again.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # the seed is in the config
