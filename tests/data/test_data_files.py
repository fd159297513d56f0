"""File loaders: round trips for .npy/.npz, image folders, IDX and CSV, and their errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from scorelab.data import load_array, load_csv, load_idx, load_image_folder, read_idx


# -- .npy / .npz ---------------------------------------------------------------------------
def test_npy_round_trip(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    raw = load_array(tmp_path / "x.npy")
    assert raw.x.dtype == torch.float32 and np.array_equal(raw.x.numpy(), x)
    assert raw.labels is None and raw.value_range is None


def test_npy_uint8_has_pixel_range(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(5, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "img.npy", x)
    raw = load_array(str(tmp_path / "img.npy"))
    assert raw.value_range == (0.0, 255.0) and np.array_equal(raw.x.numpy(), x)


def test_npz_data_and_labels(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 4)), rng.integers(0, 3, size=20)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    raw = load_array(tmp_path / "a.npz")
    assert np.allclose(raw.x.numpy(), x) and raw.labels.tolist() == y.tolist()
    # a single non-label array is the data; "labels" is found by name
    np.savez(tmp_path / "b.npz", images=x, labels=y)
    raw = load_array(tmp_path / "b.npz")
    assert np.allclose(raw.x.numpy(), x) and raw.labels.dtype == torch.int64
    # the only array, whatever its name; explicit keys
    np.savez(tmp_path / "c.npz", foo=x)
    assert np.allclose(load_array(tmp_path / "c.npz").x.numpy(), x)
    np.savez(tmp_path / "d.npz", a=x, b=x + 1, cls=y)
    raw = load_array(tmp_path / "d.npz", key="b", labels_key="cls")
    assert np.allclose(raw.x.numpy(), x + 1) and raw.labels.tolist() == y.tolist()


def test_npz_string_labels_become_class_names(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.arange(8.0).reshape(4, 2), y=np.array(["b", "a", "b", "c"]))
    raw = load_array(tmp_path / "s.npz")
    assert raw.class_names == ("a", "b", "c") and raw.labels.tolist() == [1, 0, 1, 2]


@pytest.mark.parametrize(
    ("arrays", "kwargs", "match"),
    [
        (
            {"a": np.ones(3), "b": np.ones(3)},
            {},
            r"cannot tell which array is the data.*a, b.*key=",
        ),
        ({"x": np.ones(3)}, {"key": "z"}, r"no array named 'z' \(key\); the file holds x"),
        ({"x": np.ones(3)}, {"labels_key": "t"}, r"no array named 't' \(labels_key\)"),
        ({"x": np.array(["a", "b"])}, {}, r"dtype <U1; expected numbers"),
        (
            {"x": np.ones(3), "y": np.array([0.5, 1, 2])},
            {},
            r"label of example 1 \(counting from 1\) is 0.5.*integer",
        ),
    ],
)
def test_npz_errors(tmp_path, arrays, kwargs, match):
    np.savez(tmp_path / "e.npz", **arrays)
    with pytest.raises(ValueError, match=match) as info:
        load_array(tmp_path / "e.npz", **kwargs)
    assert "e.npz" in str(info.value)


def test_npy_errors(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj.npy: cannot read without unpickling"):
        load_array(tmp_path / "obj.npy")
    np.save(tmp_path / "x.npy", np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"a .npy file holds one array; key/labels_key apply"):
        load_array(tmp_path / "x.npy", key="x")
    with pytest.raises(ValueError, match=r"missing.npy: no such file"):
        load_array(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"junk.npy"):
        load_array(tmp_path / "junk.npy")


# -- image folders -------------------------------------------------------------------------
def _write(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_png_folder_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, size=(4, 6, 5), dtype=np.uint8)  # H=6, W=5
    for i, name in enumerate(["c.png", "a.png", "d.PNG", "b.png"]):
        _write(tmp_path / name, imgs[i])
    (tmp_path / "notes.txt").write_text("ignored")
    raw = load_image_folder(tmp_path)
    assert raw.x.shape == (4, 1, 6, 5) and raw.labels is None
    order = [1, 3, 0, 2]  # sorted names: a, b, c, d.PNG
    assert np.array_equal(raw.x[:, 0].numpy(), imgs[order].astype(np.float32))
    assert raw.value_range == (0.0, 255.0)


def test_class_subfolders_rgb_and_jpeg(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    _write(tmp_path / "cat" / "1.png", rgb[0])
    _write(tmp_path / "cat" / "2.png", rgb[1])
    _write(tmp_path / "ant" / "1.jpg", rgb[2])
    raw = load_image_folder(tmp_path)
    assert raw.class_names == ("ant", "cat") and raw.labels.tolist() == [0, 1, 1]
    assert raw.x.shape == (3, 3, 4, 4)
    assert np.array_equal(raw.x[1].numpy(), rgb[0].transpose(2, 0, 1).astype(np.float32))
    gray = load_image_folder(tmp_path, grayscale=True)
    assert gray.x.shape == (3, 1, 4, 4)


def test_mixed_sizes_error_and_resize(tmp_path):
    _write(tmp_path / "a.png", np.zeros((6, 5), np.uint8))
    _write(tmp_path / "b.png", np.full((8, 9), 200, np.uint8))
    with pytest.raises(ValueError) as info:
        load_image_folder(tmp_path)
    msg = str(info.value)
    assert "a.png is 6x5 (HxW)" in msg and "b.png is 8x9" in msg
    assert "pass size=(H, W)" in msg and "size=(6, 5)" in msg
    raw = load_image_folder(tmp_path, size=(4, 4))
    assert raw.x.shape == (2, 1, 4, 4)
    assert raw.x[0].max() == 0 and (raw.x[1] == 200).all()


@pytest.mark.parametrize(
    ("setup", "kwargs", "match"),
    [
        (lambda p: None, {}, r"no PNG/JPEG images .* in the folder or its subfolders"),
        (
            lambda p: (
                _write(p / "x.png", np.zeros((2, 2), np.uint8)),
                _write(p / "k" / "y.png", np.zeros((2, 2), np.uint8)),
            ),
            {},
            r"holds images \(x.png, ...\) and subfolders of images \(k, ...\)",
        ),
        (lambda p: (p / "bad.png").write_bytes(b"nope"), {}, r"bad.png: cannot read as an image"),
        (
            lambda p: _write(p / "a.png", np.zeros((2, 2), np.uint16)),  # 16-bit PNG
            {},
            r"a.png: image mode 'I;16' .* save 8-bit images",
        ),
        (lambda p: None, {"size": (0, 4)}, r"size must be None or \(height, width\)"),
    ],
)
def test_image_folder_errors(tmp_path, setup, kwargs, match):
    setup(tmp_path)
    with pytest.raises(ValueError, match=match):
        load_image_folder(tmp_path, **kwargs)


def test_image_folder_not_a_folder(tmp_path):
    with pytest.raises(ValueError, match=r"not a folder"):
        load_image_folder(tmp_path / "nope")


# -- IDX -----------------------------------------------------------------------------------
def _idx_bytes(arr: np.ndarray, code: int, be: str) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(be).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=5, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    write = gzip.compress if gz else bytes
    (tmp_path / f"img-idx3-ubyte{suffix}").write_bytes(write(_idx_bytes(images, 0x08, ">u1")))
    (tmp_path / f"lab-idx1-ubyte{suffix}").write_bytes(write(_idx_bytes(labels, 0x08, ">u1")))
    raw = load_idx(tmp_path / f"img-idx3-ubyte{suffix}", tmp_path / f"lab-idx1-ubyte{suffix}")
    assert raw.x.shape == (5, 4, 3) and np.array_equal(raw.x.numpy(), images)
    assert raw.labels.tolist() == labels.tolist() and raw.value_range == (0.0, 255.0)


@pytest.mark.parametrize(
    ("code", "be"), [(0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")]
)
def test_idx_dtypes(tmp_path, code, be):
    arr = (np.arange(12).reshape(3, 4) - 5).astype(be)
    (tmp_path / "a.idx").write_bytes(_idx_bytes(arr, code, be))
    out = read_idx(tmp_path / "a.idx")
    assert out.shape == (3, 4) and out.dtype.isnative and np.array_equal(out, arr)


def test_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01abcd")
    with pytest.raises(ValueError, match=r"bad: not an IDX file \(magic number 01020801"):
        read_idx(tmp_path / "bad")
    full = _idx_bytes(np.zeros((4, 2), np.uint8), 0x08, ">u1")
    (tmp_path / "short").write_bytes(full[:-3])
    with pytest.raises(ValueError, match=r"short: the IDX header says shape \(4, 2\).*truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "x").write_bytes(full)
    with pytest.raises(ValueError, match=r"x: a labels file holds one number per example"):
        load_idx(tmp_path / "x", labels=tmp_path / "x")
    (tmp_path / "broken.gz").write_bytes(gzip.compress(full)[:-8])
    with pytest.raises(ValueError, match=r"broken.gz: corrupt gzip file"):
        read_idx(tmp_path / "broken.gz")


# -- CSV -----------------------------------------------------------------------------------
def test_csv_header_and_label_column(tmp_path):
    (tmp_path / "t.csv").write_text("a,species,b\n1.5,setosa,2\n\n3,virginica,4e-1\n-1,setosa,0\n")
    raw = load_csv(tmp_path / "t.csv", label_column="species")
    assert raw.x.tolist() == [[1.5, 2.0], [3.0, pytest.approx(0.4)], [-1.0, 0.0]]
    assert raw.class_names == ("setosa", "virginica") and raw.labels.tolist() == [0, 1, 0]


def test_csv_integer_labels_no_header_and_tsv(tmp_path):
    (tmp_path / "n.csv").write_text("1,2,0\n3,4,2\n5,6,1\n")
    raw = load_csv(tmp_path / "n.csv", label_column=-1)
    assert raw.x.tolist() == [[1, 2], [3, 4], [5, 6]] and raw.labels.tolist() == [0, 2, 1]
    assert raw.class_names is None
    (tmp_path / "s.csv").write_text("1,2,setosa\n3,4,virginica\n")  # no header, named classes
    raw = load_csv(tmp_path / "s.csv", label_column=2)
    assert raw.x.tolist() == [[1, 2], [3, 4]] and raw.class_names == ("setosa", "virginica")
    (tmp_path / "t.tsv").write_text("x\ty\n1\t2\n3\t4\n")
    assert load_csv(tmp_path / "t.tsv").x.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("a,b\n1,2\n3,oops\n", {}, r"t.csv, line 3, column 2 \('b'\): 'oops', not a number"),
        ("a,b\n1,2\n3,\n", {}, r"line 3, column 2 \('b'\): an empty cell; fix or remove"),
        ("1,2\n3,x\n", {"header": False}, r"line 2, column 2: 'x', not a number.*label_column"),
        ("a,b\n1,2\n3,4,5\n", {}, r"line 3: 3 cells but the table has 2 columns"),
        ("1,2\n3,4\n", {"label_column": "b"}, r"label_column='b' is a name but .* no header"),
        ("a,b\n1,2\n", {"label_column": "c"}, r"no column named 'c'; the header has a, b"),
        ("a,b\n1,2\n", {"label_column": 5}, r"label_column=5 but the table has 2 columns"),
    ],
)
def test_csv_errors(tmp_path, text, kwargs, match):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(ValueError, match=match):
        load_csv(tmp_path / "t.csv", **kwargs)
