"""Sliced Wasserstein against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from scorelab.metrics import (
    memorization_ratio,
    nearest_neighbor_distances,
    psnr,
    sliced_wasserstein,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_identical_sets_are_at_distance_zero():
    x = torch.randn(500, 3, generator=_gen())
    assert sliced_wasserstein(x, x, generator=_gen(1)).item() == 0.0


def test_a_shift_has_the_closed_form_distance():
    """For y = x + s, every 1-D projection is shifted by theta.s, so SW_2 = |s| / sqrt(d)
    (E (theta.s)^2 = |s|^2 / d for theta uniform on the sphere). In d = 4, (theta.s)^2 / |s|^2
    is Beta(1/2, 3/2): relative sd 1 per direction, so 20000 directions estimate the mean to
    0.7% and its square root to 0.35%; 2% is more than 5 standard errors."""
    d = 4
    x = torch.randn(1000, d, generator=_gen(), dtype=torch.float64)
    s = torch.tensor([3.0, 0.0, -4.0, 0.0], dtype=torch.float64)  # |s| = 5
    got = sliced_wasserstein(x, x + s, n_projections=20000, generator=_gen(2)).item()
    assert got == pytest.approx(5 / math.sqrt(d), rel=0.02)


def test_unequal_sizes_and_images():
    x = torch.zeros(10, 1, 2, 2)
    y = torch.ones(7, 1, 2, 2)
    # every projection of the constant difference (1,1,1,1) has |theta.1| <= 2
    assert 0 < sliced_wasserstein(x, y, generator=_gen()).item() <= 2


def test_bad_input():
    with pytest.raises(ValueError, match="same event size"):
        sliced_wasserstein(torch.zeros(5, 2), torch.zeros(5, 3))


def test_memorization_ratio_flags_a_copied_training_set():
    train = torch.randn(500, 5, generator=_gen(3))
    heldout = torch.randn(500, 5, generator=_gen(4))
    fresh = torch.randn(500, 5, generator=_gen(5))
    copied = train[torch.randint(500, (500,), generator=_gen(6))] + 1e-3
    # fresh draws and held-out data are exchangeable: the ratio of medians of 500 distances
    # is 1 up to sampling error (each median has a relative sd of a few percent)
    assert 0.8 < memorization_ratio(fresh, train, heldout).item() < 1.25
    assert memorization_ratio(copied, train, heldout).item() < 0.01


def test_nearest_neighbor_and_psnr_closed_forms():
    ref = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    x = torch.tensor([[3.0, 4.0], [9.0, 0.0]])
    torch.testing.assert_close(nearest_neighbor_distances(x, ref), torch.tensor([5.0, 1.0]))
    # MSE 1 on a range of 2: 10 log10(4) dB
    got = psnr(torch.ones(3, 4), torch.zeros(3, 4), data_range=2.0)
    torch.testing.assert_close(got, torch.full((3,), 10 * math.log10(4)))
