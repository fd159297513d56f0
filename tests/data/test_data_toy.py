"""The 2-D toy sets: shape, dtype, determinism per seed, centering and the shapes they draw."""

from __future__ import annotations

import math

import pytest
import torch

from scorelab.data import DEFAULT_NOISE, TOY_NAMES, toy
from scorelab.densities import make
from tests.conftest import Z, assert_mean_cov


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", TOY_NAMES)
def test_shape_dtype_finite(name):
    x = toy(name, 500, generator=gen(0))
    assert x.shape == (500, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.abs().max() < 8  # "a few units"
    assert toy(name, 10, generator=gen(0), dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("name", TOY_NAMES)
def test_deterministic_per_seed(name):
    a, b = toy(name, 300, generator=gen(7)), toy(name, 300, generator=gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, toy(name, 300, generator=gen(8)))


@pytest.mark.parametrize("name", TOY_NAMES)
def test_zero_mean(name):
    # every set is centered exactly; tolerance: Z standard errors of the sample mean
    n = 20_000
    x = toy(name, n, generator=gen(1), dtype=torch.float64)
    assert (x.mean(0).abs() <= Z * x.std(0) / math.sqrt(n)).all(), x.mean(0)


def test_ring_matches_the_ring_density():
    n = 20_000
    x = toy("ring", n, generator=gen(2), dtype=torch.float64)
    ring = make("ring")  # 8 Gaussians, radius 4, std 0.5
    assert_mean_cov(x, ring.mean.double(), ring.cov.double())


def test_shapes_without_noise():
    sq = toy("checkerboard", 2000, generator=gen(3), dtype=torch.float64)
    assert sq.abs().max() <= 4
    cells = torch.floor((sq + 4) / 2).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()  # only the dark squares

    r = toy("circles", 2000, generator=gen(3), noise=0.0, dtype=torch.float64).norm(dim=1)
    assert torch.allclose(torch.minimum((r - 2).abs(), (r - 4).abs()), torch.zeros_like(r))
    assert 0.45 < (r < 3).double().mean() < 0.55

    m = toy("moons", 2000, generator=gen(3), noise=0.0, dtype=torch.float64) / 2
    upper = (m - torch.tensor([-0.5, -0.25], dtype=torch.float64)).norm(dim=1)
    lower = (m - torch.tensor([0.5, 0.25], dtype=torch.float64)).norm(dim=1)
    assert (torch.minimum((upper - 1).abs(), (lower - 1).abs()) < 1e-12).all()


def test_noise_is_added():
    clean = toy("spiral", 1000, generator=gen(4), noise=0.0)
    noisy = toy("spiral", 1000, generator=gen(4), noise=0.3)
    assert DEFAULT_NOISE["spiral"] > 0
    assert 0.25 < (noisy - clean).std().item() < 0.35


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"name": "blobs", "n": 10},
            r"unknown toy set 'blobs'; choose one of ring, moons, swiss_roll",
        ),
        ({"name": "ring", "n": 0}, r"n must be a positive int"),
        ({"name": "ring", "n": 2.5}, r"n must be a positive int"),
        ({"name": "ring", "n": 10, "noise": -1.0}, r"noise must be a finite number >= 0"),
        ({"name": "ring", "n": 10, "noise": float("nan")}, r"noise must be a finite number >= 0"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        toy(**kwargs)
