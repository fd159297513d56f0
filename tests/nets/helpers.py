"""Small, fast networks and denoisers shared by the tests of scorelab.nets."""

from __future__ import annotations

import torch

from scorelab.nets import MLP, PARAMETERIZATIONS, Denoiser, UNet

F64 = torch.float64


def small_mlp(dim: int = 3, **kw) -> MLP:
    """A narrow MLP (random output layer unless told otherwise)."""
    kw = {"hidden": 32, "depth": 2, "emb_dim": 16, "zero_init": False, **kw}
    return MLP(dim, **kw)


def small_unet(**kw) -> UNet:
    """A tiny two-level U-Net with attention at the lower level."""
    kw = {
        "base_channels": 8,
        "channel_mult": (1, 2),
        "num_res_blocks": 1,
        "attention_resolutions": (2,),
        "emb_dim": 16,
        "groups": 4,
        "zero_init": False,
        **kw,
    }
    return UNet(**kw)


def small_model(net: str, parameterization: str, num_classes: int | None = None) -> Denoiser:
    """``PARAMETERIZATIONS[parameterization]`` around a small MLP (dim 3) or U-Net (1x8x8)."""
    if net == "mlp":
        out_dim = 1 if parameterization == "energy" else None
        f = small_mlp(3, out_dim=out_dim, num_classes=num_classes)
    else:
        f = small_unet(num_classes=num_classes)
    return PARAMETERIZATIONS[parameterization](f)


def example_x(net: str, batch: int = 4, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Inputs for ``small_model``: ``[batch, 3]`` or ``[batch, 1, 8, 8]``."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 3) if net == "mlp" else (batch, 1, 8, 8)
    return torch.randn(shape, generator=g, dtype=dtype)
