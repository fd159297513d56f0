"""Networks and wrappers: shapes and dtypes for vectors and images, with and without labels."""

from __future__ import annotations

import pytest
import torch

from scorelab._utils import append_dims
from scorelab.nets import MLP, PARAMETERIZATIONS, UNet, build, num_parameters
from tests.nets.helpers import F64, example_x, small_mlp, small_model, small_unet


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("net", ["mlp", "unet"])
@pytest.mark.parametrize("parameterization", list(PARAMETERIZATIONS))
def test_denoiser_shapes(parameterization, net, labels, dtype):
    model = small_model(net, parameterization, num_classes=3 if labels else None).to(dtype)
    x = example_x(net, dtype=dtype)
    cond = torch.tensor([0, 1, 2, 3]) if labels else None
    sigma = torch.tensor([0.01, 0.5, 2.0, 40.0], dtype=dtype)
    d = model(x, sigma, cond)
    s = model.score(x, sigma, cond)
    assert d.shape == s.shape == x.shape
    assert d.dtype == s.dtype == dtype
    assert torch.isfinite(d).all() and torch.isfinite(s).all()


@pytest.mark.parametrize("parameterization", list(PARAMETERIZATIONS))
def test_sigma_forms_agree(parameterization):
    model = small_model("mlp", parameterization).double()
    x = example_x("mlp", dtype=F64)
    ref = model(x, torch.full((4,), 0.7, dtype=F64))
    for sigma in (0.7, torch.tensor(0.7, dtype=F64), torch.tensor([0.7], dtype=F64)):
        torch.testing.assert_close(model(x, sigma), ref, rtol=1e-12, atol=1e-12)


def test_raw_net_shapes():
    assert small_mlp(3)(torch.randn(5, 3), torch.zeros(5)).shape == (5, 3)
    assert small_mlp(3, out_dim=1)(torch.randn(5, 3), 0.0).shape == (5, 1)
    # the MLP flattens small images and gives them back in shape
    assert small_mlp(16)(torch.randn(2, 1, 4, 4), torch.zeros(2)).shape == (2, 1, 4, 4)
    unet = small_unet(in_channels=3, channel_mult=(1, 2, 2), attention_resolutions=(1, 4))
    for size in (8, 16, 32):
        x = torch.randn(2, 3, size, size)
        assert unet(x, torch.zeros(2)).shape == x.shape
    assert unet(torch.randn(1, 3, 8, 12), 0.0).shape == (1, 3, 8, 12)  # H != W


def test_zero_init_starts_from_the_skip_path():
    x = torch.randn(4, 1, 8, 8)
    for net in (MLP(64), UNet()):
        assert torch.equal(net(x, torch.zeros(4)), torch.zeros_like(x))
    edm, eps = build("unet", "edm"), build("unet", "eps")
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0])
    c_skip = edm.coefficients(sigma).c_skip
    torch.testing.assert_close(edm(x, sigma), append_dims(c_skip, x.ndim) * x)
    torch.testing.assert_close(eps(x, sigma), x)


def test_unet_parameter_count_for_digits():
    """The default U-Net for 8x8 digits stays small (reported in the output with -s)."""
    unet = UNet()
    n = num_parameters(unet)
    print(f"UNet() default (8x8 digits, 1 channel): {n:,} parameters")
    assert 100_000 < n < 1_000_000
    assert unet(torch.randn(2, 1, 8, 8), torch.zeros(2)).shape == (2, 1, 8, 8)
    print(f"MLP(dim=2) default: {num_parameters(MLP(2)):,} parameters")
