"""The bundled digits: the documented fixed split, label and pixel ranges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scorelab.data import DIGITS_SIZES, load_digits
from scorelab.data.digits import _digits


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_split_shapes_and_ranges(split):
    raw = load_digits(split)
    n = DIGITS_SIZES[split]
    assert raw.x.shape == (n, 1, 8, 8) and raw.x.dtype == torch.float32
    assert raw.labels.shape == (n,) and raw.labels.dtype == torch.int64
    assert raw.labels.min() == 0 and raw.labels.max() == 9
    assert raw.x.min() == 0 and raw.x.max() == 16
    assert torch.equal(raw.x, raw.x.round())  # raw units: whole counts 0..16
    assert raw.value_range == (0.0, 16.0)
    assert raw.class_names == tuple("0123456789")


def test_documented_split():
    assert DIGITS_SIZES == {"train": 1437, "test": 360, "all": 1797}
    _, target, train, test = _digits()
    assert len(np.intersect1d(train, test)) == 0  # disjoint
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))  # complete
    counts = np.bincount(target[test], minlength=10)
    assert counts.tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]  # as in the docstring
    # the split is fixed: guard against a change in scikit-learn's shuffling
    assert test[:10].tolist() == [21, 24, 28, 34, 35, 37, 39, 42, 45, 51]
    assert int(test.sum()) == 337944


def test_split_rows_come_from_all():
    all_ = load_digits("all")
    _, _, train, test = _digits()
    for split, idx in (("train", train), ("test", test)):
        raw = load_digits(split)
        assert torch.equal(raw.x, all_.x[torch.from_numpy(idx)])
        assert torch.equal(raw.labels, all_.labels[torch.from_numpy(idx)])


def test_returns_copies():
    a = load_digits("test")
    a.x.zero_()
    assert load_digits("test").x.max() == 16


def test_bad_split():
    with pytest.raises(ValueError, match=r"unknown digits split 'val'; choose one of train, test"):
        load_digits("val")
