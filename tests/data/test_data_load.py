"""load(): built-in names and files to a validated, normalized Dataset that maps back exactly."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from scorelab.data import DATASETS, TOY_NAMES, Dataset, Normalization, load, load_digits, toy


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_datasets_lists_builtins():
    assert DATASETS == (*TOY_NAMES, "digits")


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_sets_are_standardized_and_decode_exactly(name):
    ds = load(name, n=2000, generator=gen(0))
    assert isinstance(ds, Dataset) and len(ds) == 2000 and ds.event_shape == (2,)
    assert ds.x.dtype == torch.float32 and ds.labels is None and ds.num_classes is None
    assert ds.normalization.kind == "standardize" and ds.name == name and ds.split == "train"
    assert torch.allclose(ds.x.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(ds.x.std(0, correction=0), torch.ones(2), atol=1e-5)
    raw = toy(name, 2000, generator=gen(0))
    assert torch.allclose(ds.decode(ds.x), raw, rtol=0, atol=1e-5)


def test_toy_defaults_and_noise():
    assert len(load("ring", generator=gen(0))) == 10_000
    a = load("circles", n=100, generator=gen(1), noise=0.0)
    assert torch.allclose(a.decode(a.x).norm(dim=1).max(), torch.tensor(4.0), atol=1e-5)


def test_digits_maps_pixel_range_to_unit_interval():
    ds = load("digits")
    assert len(ds) == 1437 and ds.event_shape == (1, 8, 8) and ds.num_classes == 10
    assert ds.normalization.lo == (0.0,) and ds.normalization.hi == (16.0,)
    assert ds.x.min() == -1 and ds.x.max() == 1
    raw = load_digits("train")
    assert torch.allclose(ds.decode(ds.x), raw.x, rtol=0, atol=1e-5)
    assert torch.equal(ds.decode(ds.x).round(), raw.x)
    assert torch.equal(ds.labels, raw.labels)
    test = load("digits", split="test")
    assert len(test) == 360 and test.split == "test" and test.normalization == ds.normalization


def test_subsets_first_or_random():
    first = load("digits", split="test", n=10)
    assert torch.equal(first.labels, load_digits("test").labels[:10])
    a = load("digits", n=50, generator=gen(3))
    b = load("digits", n=50, generator=gen(3))
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, load("digits", n=50).x)


def test_npz_vectors_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(100, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=100)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load(tmp_path / "d.npz")
    assert ds.normalization.kind == "standardize" and ds.num_classes == 3
    assert np.allclose(ds.decode(ds.x).numpy(), x, rtol=1e-6, atol=1e-5)
    assert ds.labels.tolist() == y.tolist() and ds.name == str(tmp_path / "d.npz")
    # a test set reuses the training set's normalization
    np.savez(tmp_path / "t.npz", x=x[:10] + 1, y=y[:10])
    test = load(tmp_path / "t.npz", split="test", normalization=ds.normalization)
    assert test.normalization is ds.normalization
    shifted = ds.x[:10] + 1 / torch.tensor(ds.normalization.scale).float()
    assert torch.allclose(test.x, shifted, rtol=0, atol=1e-6)


def test_uint8_array_images_get_a_channel_and_range_0_255(tmp_path):
    x = np.random.default_rng(1).integers(0, 200, size=(8, 5, 5), dtype=np.uint8)
    np.save(tmp_path / "img.npy", x)
    ds = load(str(tmp_path / "img.npy"))
    assert ds.event_shape == (1, 5, 5) and ds.normalization.hi == (255.0,)
    assert torch.equal(ds.decode(ds.x).round()[:, 0], torch.from_numpy(x).float())


def test_float_array_images_use_min_max(tmp_path):
    x = np.random.default_rng(1).uniform(-3, 5, size=(6, 1, 4, 4))
    np.save(tmp_path / "f.npy", x)
    ds = load(tmp_path / "f.npy")
    assert ds.normalization.kind == "unit_range" and ds.x.min() == -1 and ds.x.max() == 1


def test_png_folder_idx_and_csv(tmp_path):
    rng = np.random.default_rng(2)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(0, 256, size=(10, 12), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
    ds = load(tmp_path / "imgs", size=(6, 6))
    assert ds.event_shape == (1, 6, 6) and ds.class_names == ("a", "b") and ds.num_classes == 2
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]

    imgs = rng.integers(0, 256, size=(7, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    for arr, name in ((imgs, "train-images-idx3-ubyte.gz"), (labels, "train-labels-idx1-ubyte")):
        raw = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
        (tmp_path / name).write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    ds = load(tmp_path / "train-images-idx3-ubyte.gz", labels=tmp_path / "train-labels-idx1-ubyte")
    assert ds.event_shape == (1, 4, 4) and ds.labels.tolist() == labels.tolist()
    assert torch.equal(ds.decode(ds.x).round()[:, 0], torch.from_numpy(imgs).float())

    (tmp_path / "t.csv").write_text("u,v,kind\n1,2,x\n2,5,y\n4,1,x\n")
    ds = load(tmp_path / "t.csv", label_column="kind")
    assert ds.event_shape == (2,) and ds.class_names == ("x", "y")
    assert ds.labels.tolist() == [0, 1, 0]
    assert torch.allclose(ds.decode(ds.x), torch.tensor([[1.0, 2], [2, 5], [4, 1]]), atol=1e-6)


def test_normalization_saved_beside_a_checkpoint(tmp_path):
    ds = load("spiral", n=500, generator=gen(4))
    (tmp_path / "norm.json").write_text(json.dumps(ds.normalization.to_dict()))
    norm = Normalization.from_dict(json.loads((tmp_path / "norm.json").read_text()))
    samples = torch.randn(20, 2, generator=gen(5))
    assert torch.equal(norm.inverse(samples), ds.decode(samples))


def test_validation_runs_before_returning(tmp_path):
    x = np.random.default_rng(3).normal(size=(10, 2))
    x[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(ValueError) as info:
        load(tmp_path / "nan.npy")
    assert str(info.value).startswith(f"{tmp_path / 'nan.npy'}: 1 NaN/inf value(s)")
    assert "example 5 (counting from 1; x[4, 1] = nan)" in str(info.value)
    # with n, example numbers still refer to the whole file
    with pytest.raises(ValueError, match=r"first is example 5 \(counting from 1"):
        load(tmp_path / "nan.npy", n=3)
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    with pytest.raises(ValueError, match=r"flat.npy: the data has shape \(5,\).*reshape\(-1, 1\)"):
        load(tmp_path / "flat.npy")
    np.savez(tmp_path / "lab.npz", x=np.random.default_rng(0).normal(size=(3, 2)), y=[0, -2, 1])
    with pytest.raises(
        ValueError,
        match=r"lab.npz: 1 label\(s\) out of range.*label of example 2 \(counting from 1\), -2",
    ):
        load(tmp_path / "lab.npz")
    with pytest.raises(ValueError, match=r"ring: only 1 example"):
        load("ring", n=1)


@pytest.mark.parametrize(
    ("setup", "args", "kwargs", "match"),
    [
        (None, ("nope",), {}, r"'nope' is neither a built-in data set \(ring, moons"),
        (None, ("ring",), {"size": 3}, r"unexpected keyword\(s\) size for toy set 'ring'"),
        (None, ("digits",), {"noise": 0.1}, r"unexpected keyword\(s\) noise for 'digits'"),
        (None, ("digits",), {"split": "val"}, r"unknown digits split 'val'"),
        (None, ("digits",), {"n": 5000}, r"n must be an int in 1..1437"),
        ("a.npy", (), {"size": (4, 4)}, r"a.npy \(array\); it accepts key, labels_key"),
        ("a.png", (), {}, r"a.png: a single image; pass the folder that holds the images"),
        ("a.bin", (), {}, r"a.bin: unsupported file; pass .npy, .npz, .csv"),
        (None, ("ring",), {"normalization": "std"}, r"normalization must be a Normalization"),
    ],
)
def test_load_errors(tmp_path, setup, args, kwargs, match):
    if setup is not None:
        path = tmp_path / setup
        if setup.endswith(".npy"):
            np.save(path, np.ones((3, 2)) * np.arange(3)[:, None])
        elif setup.endswith(".png"):
            Image.fromarray(np.zeros((2, 2), np.uint8)).save(path)
        else:
            path.write_bytes(b"\x01\x02\x03\x04")
        args = (path,)
    with pytest.raises(ValueError, match=match):
        load(*args, **kwargs)


def test_quantization_step_finds_the_pixel_grid_and_nothing_else():
    from scorelab.data import quantization_step

    assert quantization_step(load("digits").x) == pytest.approx(2 / 16)  # 0..16 -> [-1, 1]
    moons = load("moons", n=500, generator=torch.Generator().manual_seed(0))
    assert quantization_step(moons.x) is None  # continuous values
    assert quantization_step(torch.tensor([0.0, 0.1, 0.25])) is None  # uneven gaps
    assert quantization_step(torch.tensor([0.5, 0.5])) is None  # one value: no grid


def test_draw_labels_follows_the_class_frequencies():
    """``draw_labels`` is i.i.d. from ``class_frequencies``: each class's share of 200,000 draws
    within 5 binomial standard errors of its frequency; seeded; unlabelled data is an error."""
    from scorelab.data import load

    digits = load("digits")
    p = digits.class_frequencies()
    assert p.sum().item() == pytest.approx(1.0) and len(p) == digits.num_classes
    n = 200_000
    labels = digits.draw_labels(n, torch.Generator().manual_seed(0))
    share = torch.bincount(labels, minlength=len(p)).double() / n
    assert ((share - p).abs() <= 5 * (p * (1 - p) / n).sqrt()).all()
    again = digits.draw_labels(50, torch.Generator().manual_seed(3))
    assert again.tolist() == digits.draw_labels(50, torch.Generator().manual_seed(3)).tolist()
    with pytest.raises(ValueError, match="no labels"):
        load("moons", n=100).draw_labels(5)
