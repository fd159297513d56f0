"""Bad input fails early with a ValueError naming the argument, the problem and the fix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scorelab.nets import (
    MLP,
    ClassEmbedding,
    EDMDenoiser,
    EnergyDenoiser,
    FourierEmbedding,
    ScoreDenoiser,
    UNet,
    build,
    from_config,
)
from tests.nets.helpers import small_mlp, small_unet

X = torch.zeros(4, 3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m(X, 0.0), r"sigma must be finite and > 0; got 0.0.*sigma_min"),
        (lambda m: m(X, torch.tensor([1.0, -1, 1, 1])), r"sigma must be finite and > 0; got -1"),
        (lambda m: m(X, float("nan")), r"sigma must be finite and > 0; got nan"),
        (lambda m: m.score(X, torch.ones(3)), r"sigma has shape \(3,\).*shape \(4,\)"),
        (lambda m: m(X, "big"), r"sigma must be a number or a \[batch\] tensor"),
        (lambda m: m(X.numpy(), 1.0), r"x must be a torch.Tensor"),
        (lambda m: m(X.long(), 1.0), r"x must be a floating tensor"),
        (lambda m: m(torch.zeros(3), 1.0), r"x has shape \(3,\).*x\[None\]"),
        (lambda m: m(torch.zeros(4, 2), 1.0), r"x_in has shape \(4, 2\).*built with dim=3"),
        (lambda m: m(X.double(), 1.0), r"x_in is torch.float64 but the network's parameters"),
        (lambda m: m(X, 1.0, torch.zeros(4, dtype=torch.long)), r"cond was given but the net"),
    ],
)
def test_denoiser_call_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(EDMDenoiser(small_mlp(3)))


@pytest.mark.parametrize(
    ("cond", "match"),
    [
        (torch.tensor([0, 1, 5, 2]), r"cond holds label 5 outside \[0, 3\].*'no label' token"),
        (torch.tensor([0, -1, 0, 2]), r"cond holds label -1"),
        (torch.zeros(4), r"cond must be an integer tensor"),
        (torch.zeros(3, dtype=torch.long), r"cond has shape \(3,\); expected one label per"),
    ],
)
def test_label_errors(cond, match):
    with pytest.raises(ValueError, match=match):
        EDMDenoiser(small_mlp(3, num_classes=3))(X, 1.0, cond)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.zeros(2, 1, 7, 8), r"spatial size 7x8.*divisible by 2; pad or resize"),
        (torch.zeros(2, 3, 8, 8), r"x_in has shape \(2, 3, 8, 8\).*in_channels=1"),
        (torch.zeros(2, 64), r"the UNet expects images \[batch, 1, H, W\]"),
    ],
)
def test_unet_input_errors(x, match):
    with pytest.raises(ValueError, match=match):
        small_unet()(x, torch.zeros(x.shape[0]))


@pytest.mark.parametrize(
    ("build_it", "match"),
    [
        (lambda: UNet(base_channels=12), r"groups=8 does not divide 12 channels.*groups=6"),
        (lambda: UNet(channel_mult=(1, 3), groups=2, base_channels=3), r"groups=2 does not div"),
        (lambda: UNet(attention_resolutions=(4,)), r"attention_resolutions holds 4.*\[1, 2\]"),
        (lambda: UNet(channel_mult=()), r"channel_mult must list at least one level"),
        (lambda: UNet(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (lambda: MLP(0), r"dim must be an int >= 1; got 0"),
        (lambda: MLP(2, embedding="sinusoid"), r"unknown embedding 'sinusoid'; choose one of"),
        (lambda: MLP(2, emb_dim=15), r"dim must be even"),
        (lambda: MLP(2, seed=1.5), r"seed must be an int"),
        (lambda: FourierEmbedding(8, scale=0.0), r"scale must be finite and > 0"),
        (lambda: ClassEmbedding(0, 4), r"num_classes must be an int >= 1"),
        (lambda: EDMDenoiser(small_mlp(2), sigma_data=0.0), r"sigma_data must be finite and > 0"),
        (lambda: ScoreDenoiser(lambda x, c, y: x), r"net must be a torch.nn.Module"),
        (lambda: build("mlpp", "edm", dim=2), r"unknown net 'mlpp'; choose one of mlp, unet"),
        (lambda: build("mlp", "x0", dim=2), r"unknown parameterization 'x0'; choose one of score"),
        (lambda: build("mlp", "edm", dim=2, width=3), r"bad parameters for net 'mlp'.*width"),
        (lambda: from_config({"net": "mlp"}), r"config lacks 'parameterization'"),
        (lambda: EDMDenoiser(nn.Linear(2, 2)).config(), r"cannot describe a Linear network"),
    ],
)
def test_construction_errors(build_it, match):
    with pytest.raises(ValueError, match=match):
        build_it()


def test_output_shape_errors():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"EnergyDenoiser needs one number per sample"):
        EnergyDenoiser(small_mlp(3, out_dim=2))(x, 1.0)
    with pytest.raises(ValueError, match=r"ScoreDenoiser needs an output shaped like its input"):
        ScoreDenoiser(small_mlp(3, out_dim=1))(x, 1.0)
