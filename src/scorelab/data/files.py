"""User data from files: NumPy arrays, folders of PNG/JPEG images, MNIST IDX files, CSV tables.

Every loader returns a ``RawData`` in the file's own units (float32 ``x`` as stored, int64
``labels`` or None); normalization and validation happen in ``scorelab.data.load``. Errors
name the file (and the row, column or example where it applies) and the fix. Nothing is
unpickled.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

PathLike = str | os.PathLike

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABEL_KEYS = ("y", "labels")
DATA_KEYS = ("x", "data")


class RawData(NamedTuple):
    """Data as read from a source, in its own units."""

    x: Tensor  # float32 [N, ...], as stored
    labels: Tensor | None  # int64 [N] class indices
    class_names: tuple[str, ...] | None = None  # names of classes 0..K-1, where the file has them
    value_range: tuple[float, float] | None = None  # the units' known range (0, 255 for 8-bit)


class AmbiguousArrayError(ValueError):
    """An ``.npz`` holds several arrays and none is named ``x`` or ``data``: the caller must
    say which is the data (``key=`` in Python, ``--data-key`` on the command line)."""

    def __init__(self, path: Path, keys: list[str], cli: bool = False) -> None:
        self.path, self.keys = path, list(keys)
        how = (
            f"choose the data with --data-key NAME (e.g. --data-key {keys[0]})"
            if cli
            else f"pass key=NAME (e.g. key={keys[0]!r})"
        )
        super().__init__(
            f"{path}: cannot tell which array is the data; the file holds {', '.join(keys)}: "
            f"{how}, or save the data as 'x'"
        )


# -- shared helpers -----------------------------------------------------------------------
def _features(arr: np.ndarray, source: str) -> tuple[Tensor, tuple[float, float] | None]:
    """Numeric array -> float32 tensor, and the known value range for 8-bit data."""
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{source}: the data has dtype {arr.dtype}; expected numbers (save a numeric array, "
            "e.g. np.save(path, x.astype(np.float32)))"
        )
    value_range = (0.0, 255.0) if arr.dtype == np.uint8 else None
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), value_range


def encode_labels(values: np.ndarray, source: str) -> tuple[Tensor, tuple[str, ...] | None]:
    """Labels -> int64 class indices; strings become indices into their sorted unique names."""
    values = np.asarray(values)
    if values.dtype.kind in "USO":
        text = np.array([str(v).strip() for v in values.reshape(-1)])
        try:  # integers written as text (a CSV column): keep their values
            as_int = np.array([int(v) for v in text], dtype=np.int64)
            return torch.from_numpy(as_int.reshape(values.shape)), None
        except ValueError:
            names, codes = np.unique(text, return_inverse=True)
            return torch.from_numpy(codes.astype(np.int64).reshape(values.shape)), tuple(
                str(s) for s in names
            )
    if values.dtype.kind in "biu":
        return torch.from_numpy(values.astype(np.int64)), None
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            raise ValueError(
                f"{source}: labels must be whole numbers (class indices); the label of example "
                f"{i + 1} (counting from 1) is {values.reshape(-1)[i]}: pass integer class "
                "indices 0..K-1"
            )
        return torch.from_numpy(values.astype(np.int64)), None
    raise ValueError(f"{source}: labels have dtype {values.dtype}; expected integers or strings")


def _check_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file; check the path")
    return p


# -- NumPy ----------------------------------------------------------------------------------
def load_array(path: PathLike, *, key: str | None = None, labels_key: str | None = None) -> RawData:
    """Read ``.npy`` (the data) or ``.npz`` (the data and optional labels), without pickle.

    In an ``.npz``, the data is ``key``, else the only array, else ``"x"`` or ``"data"``, else
    the only array that is not labels; the labels are ``labels_key``, else ``"y"`` or
    ``"labels"`` if present.
    """
    p = _check_file(path)
    try:
        loaded = np.load(p, allow_pickle=False)
    except ValueError as err:
        raise ValueError(
            f"{p}: cannot read without unpickling ({err}); save numeric arrays, e.g. "
            "np.savez(path, x=x.astype(np.float32), y=labels)"
        ) from err
    except OSError as err:
        raise ValueError(f"{p}: not a NumPy .npy/.npz file ({err})") from err
    if isinstance(loaded, np.ndarray):
        if key is not None or labels_key is not None:
            raise ValueError(
                f"{p}: a .npy file holds one array; key/labels_key apply to .npz files (save "
                "the data and labels together with np.savez(path, x=x, y=labels))"
            )
        x, value_range = _features(loaded, str(p))
        return RawData(x, None, None, value_range)
    with loaded:
        keys = list(loaded.files)
        listed = ", ".join(keys) or "(none)"
        for name, k in (("key", key), ("labels_key", labels_key)):
            if k is not None and k not in keys:
                raise ValueError(f"{p}: no array named {k!r} ({name}); the file holds {listed}")
        if key is None:
            others = [k for k in keys if k not in LABEL_KEYS and k != labels_key]
            found = [k for k in DATA_KEYS if k in keys]
            if len(keys) == 1:
                key = keys[0]
            elif found:
                key = found[0]
            elif len(others) == 1:
                key = others[0]
            else:
                raise AmbiguousArrayError(p, keys)
        if labels_key is None:
            labels_key = next((k for k in LABEL_KEYS if k in keys and k != key), None)
        try:
            x, value_range = _features(loaded[key], f"{p} [{key}]")
            labels = None if labels_key is None else loaded[labels_key]
        except ValueError as err:
            if "pickle" not in str(err):
                raise
            raise ValueError(
                f"{p}: holds an object array that cannot be read without unpickling; save "
                "numeric arrays instead"
            ) from err
    lab, names = (None, None) if labels is None else encode_labels(labels, f"{p} [{labels_key}]")
    return RawData(x, lab, names, value_range)


# -- images --------------------------------------------------------------------------------
_GRAY_MODES = ("1", "L", "LA")
_UNSUPPORTED_MODES = ("I", "I;16", "I;16B", "I;16L", "F")


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        f
        for f in folder.iterdir()
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
    )


def _check_size(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    ok = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    )
    if not ok:
        raise ValueError(f"size must be None or (height, width), two positive ints; got {size!r}")
    return int(size[0]), int(size[1])


def load_image_folder(
    path: PathLike, size: tuple[int, int] | None = None, grayscale: bool | None = None
) -> RawData:
    """Read a folder of 8-bit PNG/JPEG images to ``[N, C, H, W]`` with values 0..255.

    Files are read in sorted name order. If the folder holds subfolders of images instead,
    each subfolder is a class (labels 0..K-1 in sorted folder order, ``class_names`` their
    names). ``size=(H, W)`` resizes every image (bilinear); without it all images must have
    the same size. ``grayscale`` None keeps one channel if every image is grayscale and uses RGB
    otherwise; alpha is dropped.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder; pass a folder of PNG/JPEG images")
    size = _check_size(size)
    top = _image_files(root)
    class_dirs = sorted(
        d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _image_files(d)
    )
    if top and class_dirs:
        raise ValueError(
            f"{root}: holds images ({top[0].name}, ...) and subfolders of images "
            f"({class_dirs[0].name}, ...); use either a flat folder (no labels) or one subfolder "
            "per class, not both"
        )
    if class_dirs:
        files = [(f, k) for k, d in enumerate(class_dirs) for f in _image_files(d)]
        class_names: tuple[str, ...] | None = tuple(d.name for d in class_dirs)
    else:
        files = [(f, -1) for f in top]
        class_names = None
    if not files:
        raise ValueError(
            f"{root}: no PNG/JPEG images ({', '.join(IMAGE_SUFFIXES)}) in the folder or its "
            "subfolders; put the images in this folder, or one subfolder per class"
        )

    # pass 1: headers only (size, mode), so a bad folder fails before any decoding
    headers = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                headers.append((im.size, im.mode))
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(
                f"{f}: cannot read as an image ({err}); remove it or replace it with a valid "
                "PNG/JPEG file"
            ) from err
    for (f, _), (_, mode) in zip(files, headers, strict=True):
        if mode in _UNSUPPORTED_MODES:
            raise ValueError(
                f"{f}: image mode {mode!r} (16-bit or float) is not supported; save 8-bit "
                "images (mode L or RGB)"
            )
    if size is None:
        (w0, h0), f0 = headers[0][0], files[0][0]
        for (f, _), ((w, h), _) in zip(files, headers, strict=True):
            if (w, h) != (w0, h0):
                raise ValueError(
                    f"{root}: images have different sizes: {f0} is {h0}x{w0} (HxW) but {f} is "
                    f"{h}x{w}; pass size=(H, W) to resize every image, e.g. size=({h0}, {w0})"
                )
        size = (h0, w0)
    if grayscale is None:
        grayscale = all(mode in _GRAY_MODES for _, mode in headers)
    mode = "L" if grayscale else "RGB"

    # pass 2: pixels
    out = np.empty((len(files), 1 if grayscale else 3, *size), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        with Image.open(f) as im:
            im = im.convert(mode)
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            a = np.asarray(im)
        out[i] = a[None] if grayscale else a.transpose(2, 0, 1)
    labels = torch.tensor([k for _, k in files], dtype=torch.int64) if class_names else None
    return RawData(torch.from_numpy(out).float(), labels, class_names, (0.0, 255.0))


# -- IDX (MNIST format) ---------------------------------------------------------------------
# type byte of the magic number -> big-endian dtype (LeCun et al., the MNIST database page)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_maybe_gz(p: Path) -> bytes:
    raw = p.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise ValueError(f"{p}: corrupt gzip file ({err}); download it again") from err


def is_idx(path: PathLike) -> bool:
    """Whether ``path`` starts with an IDX magic number ``00 00 <type> <ndim>`` (gz or not)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(p, "rb") as fh:
            magic = fh.read(4)
    except (OSError, EOFError):
        return False
    return len(magic) == 4 and magic[:2] == b"\0\0" and magic[2] in _IDX_DTYPES and magic[3] > 0


def read_idx(path: PathLike) -> np.ndarray:
    """Parse an IDX file (gz or not): magic ``00 00 <type> <ndim>``, big-endian uint32 dims, data.

    The layout of the MNIST database (LeCun et al. 1998); returns a native-endian array.
    """
    p = _check_file(path)
    raw = _read_maybe_gz(p)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(
            f"{p}: not an IDX file (magic number {raw[:4].hex() or 'missing'}; expected 0000 "
            "then a type byte 08/09/0b/0c/0d/0e and the number of dims, e.g. 00000803 for MNIST "
            "images); pass an IDX file such as train-images-idx3-ubyte.gz"
        )
    ndim, dtype = raw[3], np.dtype(_IDX_DTYPES[raw[2]])
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{p}: truncated IDX header ({len(raw)} bytes for {ndim} dims)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{p}: the IDX header says shape {dims} of {dtype.name} ({expected} bytes) but the "
            f"file has {len(raw)} bytes; the file is truncated or damaged: download it again"
        )
    arr = np.frombuffer(raw, dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def load_idx(path: PathLike, labels: PathLike | None = None) -> RawData:
    """Read MNIST-format IDX data and optionally its labels file (e.g. train-labels-idx1-ubyte)."""
    arr = read_idx(path)
    x, value_range = _features(arr, str(path))
    lab = None
    if labels is not None:
        lab_arr = read_idx(labels)
        if lab_arr.ndim != 1:
            raise ValueError(
                f"{labels}: a labels file holds one number per example (1 dim); got shape "
                f"{lab_arr.shape}: pass the labels file (idx1), not an images file"
            )
        lab, _ = encode_labels(lab_arr, str(labels))
    return RawData(x, lab, None, value_range)


# -- CSV -----------------------------------------------------------------------------------
def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def load_csv(
    path: PathLike,
    *,
    label_column: str | int | None = None,
    header: bool | None = None,
    delimiter: str | None = None,
) -> RawData:
    """Read a numeric table, one example per row, with an optional header and label column.

    ``header`` None detects a header: a first row with a non-number outside the label column,
    or one that holds the ``label_column`` name. ``label_column`` is a column name (needs a
    header) or index; its values may be integers or class names. ``delimiter`` defaults to a
    tab for ``.tsv`` files and a comma otherwise. Blank lines are skipped.
    """
    p = _check_file(path)
    if delimiter is None:
        delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            rows = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{p}: not a readable text table ({err}); pass a UTF-8 CSV file") from err
    if header is None:  # a header has a non-number outside the label column
        first = rows[0][1] if rows else []
        skip = label_column % len(first) if isinstance(label_column, int) and first else None
        named = isinstance(label_column, str) and label_column in [c.strip() for c in first]
        header = named or any(not _is_number(c) for j, c in enumerate(first) if j != skip)
    names = [c.strip() for c in rows[0][1]] if header and rows else None
    body = rows[1:] if header else rows
    ncols = len(names) if names is not None else (len(body[0][1]) if body else 0)

    label_idx: int | None = None
    if isinstance(label_column, str):
        if names is None:
            raise ValueError(
                f"{p}: label_column={label_column!r} is a name but the file has no header row; "
                "pass the column's index (an int) instead"
            )
        if label_column not in names:
            raise ValueError(
                f"{p}: no column named {label_column!r}; the header has {', '.join(names)}"
            )
        label_idx = names.index(label_column)
    elif label_column is not None:
        if isinstance(label_column, bool) or not isinstance(label_column, int):
            raise ValueError(f"label_column must be a column name or index; got {label_column!r}")
        if not -ncols <= label_column < ncols:
            raise ValueError(f"{p}: label_column={label_column} but the table has {ncols} columns")
        label_idx = label_column % ncols

    def column(j: int) -> str:
        return f"column {j + 1}" + (f" ({names[j]!r})" if names is not None else "")

    feats = [j for j in range(ncols) if j != label_idx]
    x = np.empty((len(body), len(feats)), dtype=np.float32)
    label_cells = []
    for i, (line, row) in enumerate(body):
        if len(row) != ncols:
            raise ValueError(
                f"{p}, line {line}: {len(row)} cells but the table has {ncols} columns; make "
                "every row the same length"
            )
        for k, j in enumerate(feats):
            cell = row[j].strip()
            try:
                x[i, k] = float(cell)
            except ValueError:
                what = "an empty cell" if not cell else f"{cell!r}, not a number"
                hint = (
                    "" if label_idx is not None else ", or pass label_column=... if it holds labels"
                )
                raise ValueError(
                    f"{p}, line {line}, {column(j)}: {what}; fix or remove that row{hint}"
                ) from None
        if label_idx is not None:
            label_cells.append(row[label_idx])
    labels, class_names = (None, None)
    if label_idx is not None:
        labels, class_names = encode_labels(np.array(label_cells, dtype=str), f"{p} labels")
    return RawData(torch.from_numpy(x), labels, class_names, None)
