"""The range that maps images onto [-1, 1] comes from the data type or the whole file, never
from which pixel values a subset happens to hold (issue 18, item 10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scorelab.data import AmbiguousArrayError, load, load_array


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("lo", "hi", "expected", "source"),
    [
        (0.1, 0.9, (0.0, 1.0), "floats within [0, 1]"),
        (-0.7, 0.8, (-1.0, 1.0), "floats within [-1, 1]"),
        (0.0, 16.0, (0.0, 16.0), "whole file's min..max"),  # e.g. the digits saved as floats
        (-3.0, 5.0, (-3.0, 5.0), "whole file's min..max"),
    ],
)
def test_float_images_take_the_smallest_standard_range_that_holds_them(
    tmp_path, lo, hi, expected, source
):
    x = np.random.default_rng(0).uniform(lo, hi, size=(20, 1, 4, 4))
    x.flat[0], x.flat[1] = lo, hi  # the file's extremes, so the rule sees exactly lo..hi
    np.save(tmp_path / "f.npy", x.astype(np.float32))
    ds = load(tmp_path / "f.npy")
    assert (ds.normalization.lo[0], ds.normalization.hi[0]) == pytest.approx(expected)
    assert source in ds.range_source


def test_a_subset_is_mapped_by_the_whole_file_not_its_own_extremes(tmp_path):
    """The first 10 rows lack the file's extreme values (0 and 1, in the last row): they keep
    the range 0..1, so a pixel of 0.5 is 0 in model units, as in the whole file."""
    x = np.full((30, 1, 3, 3), 0.5, dtype=np.float32)
    x[:10] = np.random.default_rng(1).uniform(0.3, 0.7, size=(10, 1, 3, 3))
    x[-1, 0, 0, 0], x[-1, 0, 0, 1] = 0.0, 1.0
    np.save(tmp_path / "f.npy", x)
    sub = load(tmp_path / "f.npy", n=10)
    assert (sub.normalization.lo, sub.normalization.hi) == ((0.0,), (1.0,))
    half = torch.tensor([[[[0.5]]]])
    assert sub.normalization.forward(half).item() == 0.0
    assert torch.allclose(sub.decode(sub.x), torch.from_numpy(x[:10]), atol=1e-6)


def test_uint8_keeps_0_255_and_data_range_overrides(tmp_path):
    x = np.random.default_rng(2).integers(10, 100, size=(8, 1, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "u.npy", x)
    ds = load(tmp_path / "u.npy")
    assert ds.normalization.hi == (255.0,) and "data type" in ds.range_source
    given = load(tmp_path / "u.npy", data_range=(0, 127.5))
    assert (given.normalization.lo, given.normalization.hi) == ((0.0,), (127.5,))
    assert given.range_source == "given"


@pytest.mark.parametrize(
    ("data_range", "match"),
    [
        ((0, 50), r"the data spans 10\.\.99, outside data_range 0\.\.50; widen it"),
        ((5, 1), r"data_range must be \(lo, hi\) with lo < hi"),
    ],
)
def test_bad_data_range(tmp_path, data_range, match):
    x = np.full((4, 1, 2, 2), 10, dtype=np.uint8)
    x[0, 0, 0, 0] = 99
    np.save(tmp_path / "u.npy", x)
    with pytest.raises(ValueError, match=match):
        load(tmp_path / "u.npy", data_range=data_range)


def test_data_range_is_for_images_only():
    with pytest.raises(ValueError, match="data_range applies to images"):
        load("moons", n=10, generator=gen(0), data_range=(0, 1))


def test_ambiguous_npz_names_the_keys_in_python_words(tmp_path):
    np.savez(tmp_path / "m.npz", a=np.ones((3, 2)), b=np.arange(6.0).reshape(3, 2))
    with pytest.raises(AmbiguousArrayError, match=r"holds a, b: pass key=NAME \(e\.g\. key='a'\)"):
        load_array(tmp_path / "m.npz")
    assert load(tmp_path / "m.npz", key="b").x.shape == (3, 2)
