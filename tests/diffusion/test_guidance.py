"""Classifier-free guidance and inpainting against exact class-conditional denoisers."""

from __future__ import annotations

import math

import pytest
import torch

from scorelab import diffusion
from scorelab.densities import Gaussian, GaussianMixture

GM = GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], 1.0)  # class k = component k
N = 2000


def _sample(weight, cond, seed=0):
    guided = diffusion.ClassifierFreeGuidance(GM.denoise, weight)
    gen = torch.Generator().manual_seed(seed)
    return diffusion.sample(guided, N, shape=(2,), sampler="heun", nfe=35, cond=cond,
                            generator=gen, progress=False)  # fmt: skip


def test_weight_zero_is_unconditional_and_one_is_the_class():
    """w = 0 keeps the 0.2 mode weight (5 binomial SE); w = 1 samples class 0 only, whose
    mean (-5, -5) and variance 1 hold within 5 standard errors of N = 2000 draws."""
    free = _sample(0.0, 0).samples
    assert abs((free[:, 0] < 0).double().mean().item() - 0.2) < 5 * math.sqrt(0.16 / N)
    cls = _sample(1.0, 0).samples.double()
    assert (cls[:, 0] < 0).all()
    assert ((cls.mean(0) + 5).abs() < 5 / math.sqrt(N)).all()
    assert ((cls.var(0) - 1).abs() < 5 * math.sqrt(2 / N)).all()


def test_guidance_sharpens_and_counts_two_evaluations():
    res = _sample(3.0, torch.ones(N, dtype=torch.long))
    assert res.nfe == 70  # conditional and unconditional pass per step
    x = res.samples.double()
    assert (x[:, 0] > 0).all() and x.var(0).max() < 0.9  # w > 1: tighter than the class itself


def test_exact_class_conditional_denoiser_and_no_label_token():
    x = torch.zeros(3, 2)
    out = GM.denoise(x, 1.0, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(out[0], torch.tensor([-2.5, -2.5]))
    torch.testing.assert_close(out[1], torch.tensor([2.5, 2.5]))
    torch.testing.assert_close(out[2], GM.denoise(x[2:], 1.0)[0])  # label K = unconditional
    with pytest.raises(ValueError, match=r"cond must lie in 0\.\.2"):
        GM.denoise(x, 1.0, torch.tensor([0, 3, 1]))


def test_inpainting_returns_the_known_values_and_moves_the_rest_toward_them():
    """Replacement inpainting keeps known coordinates exactly. It is an approximation: on a
    Gaussian with correlation 0.9, given x0 = 1, the exact conditional mean of x1 is 0.9; the
    replacement method lands between the prior mean 0 and it (measured 0.44 with Heun)."""
    g = Gaussian([0.0, 0.0], [[1.0, 0.9], [0.9, 1.0]])
    known = torch.zeros(N, 2)
    known[:, 0] = 1.0
    mask = torch.zeros(N, 2)
    mask[:, 0] = 1
    inp = diffusion.Inpainter(g.denoise, known, mask, torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(1)
    x = diffusion.sample(inp, N, shape=(2,), sampler="heun", nfe=99, batch_size=N,
                         generator=gen, progress=False).samples  # fmt: skip
    assert (x[:, 0] == 1.0).all()
    assert 0.2 < x[:, 1].mean().item() < 0.9
    with pytest.raises(ValueError, match="known and mask must have the same shape"):
        diffusion.Inpainter(g.denoise, known, mask[:, :1])
