"""Data: 2-D toy sets, the bundled 8x8 digits, and user data from files, validated and normalized.

>>> from scorelab.data import load
>>> ds = load("moons", n=5000, generator=torch.Generator().manual_seed(0))
>>> ds.x.shape, ds.normalization.kind          # ([5000, 2], 'standardize')
>>> ds = load("digits", split="test")           # [360, 1, 8, 8] in [-1, 1]
>>> ds = load("my_images/", size=(32, 32))     # a folder of PNG/JPEG, subfolders = classes
>>> ds.decode(samples)                          # generated samples back in the data's units

``Dataset.x`` is in model units; ``Dataset.normalization`` (saved with ``to_dict()``) maps
them back to the data's units exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from scorelab.data.digits import DIGITS_RANGE, DIGITS_SIZES, load_digits
from scorelab.data.files import (
    AmbiguousArrayError,
    RawData,
    is_idx,
    load_array,
    load_csv,
    load_idx,
    load_image_folder,
    read_idx,
)
from scorelab.data.normalize import Normalization
from scorelab.data.toy import DEFAULT_NOISE, TOY_NAMES, toy
from scorelab.data.validate import validate

DATASETS: tuple[str, ...] = (*TOY_NAMES, "digits")
TOY_DEFAULT_N = 10_000


@dataclass(frozen=True, eq=False)
class Dataset:
    """Validated data in model units, with the map back to the data's units.

    ``x`` is float32 ``[N, *event_shape]``; ``labels`` int64 ``[N]`` class indices or None;
    ``name`` the built-in name or the path; ``split`` the split's name.
    """

    x: Tensor
    labels: Tensor | None
    normalization: Normalization
    name: str
    split: str = "train"
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    range_source: str | None = None  # images: where the data range mapped to [-1, 1] came from

    def __post_init__(self) -> None:
        if self.labels is not None and self.num_classes is None:
            object.__setattr__(self, "num_classes", int(self.labels.max()) + 1)

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one example: ``(D,)`` for vectors, ``(C, H, W)`` for images."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0]

    def decode(self, y: Tensor, *, clamp: bool = False) -> Tensor:
        """Model units (e.g. generated samples) back to the data's units; see ``Normalization``."""
        return self.normalization.inverse(y, clamp=clamp)

    def class_frequencies(self) -> Tensor:
        """``p(c)``: each class's share of the examples, float64 ``[num_classes]``."""
        if self.labels is None:
            raise ValueError(f"{self.name} has no labels, so no class frequencies")
        counts = torch.bincount(self.labels.cpu(), minlength=self.num_classes)
        return counts.double() / len(self.labels)

    def draw_labels(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` class labels drawn independently from ``class_frequencies``, int64 ``[n]``.

        With a class-conditional model, ``c ~ p(c)`` then ``x ~ p(x | c)`` is a draw of the
        data distribution ``p(x) = sum_c p(c) p(x | c)`` (what ``scorelab sample --class
        data`` does)."""
        return torch.multinomial(self.class_frequencies(), n, replacement=True,
                                 generator=generator)  # fmt: skip

    def __repr__(self) -> str:
        classes = "" if self.num_classes is None else f", num_classes={self.num_classes}"
        return (
            f"Dataset({self.name!r}, split={self.split!r}, n={len(self)}, "
            f"event_shape={self.event_shape}{classes}, normalization={self.normalization.kind!r})"
        )


def quantization_step(x: Tensor, max_levels: int = 1024) -> float | None:
    """The spacing of the grid ``x``'s values lie on (e.g. 2/16 for the digits in [-1, 1]), or
    ``None`` when the values are not on an evenly spaced grid of at most ``max_levels``: the
    bin width for uniform dequantization and bits per dimension of discrete data."""
    values = torch.unique(x.detach().flatten().double().cpu())
    if len(values) < 2 or len(values) > max_levels:
        return None
    gaps = values.diff()
    step = float(gaps.min())
    ratio = gaps / step
    if (ratio - ratio.round()).abs().max() > 1e-3:
        return None
    return step


# keyword arguments each kind of source accepts, passed to its loader
_FILE_KWARGS = {
    "array": ("key", "labels_key"),
    "csv": ("label_column", "header", "delimiter"),
    "images": ("size", "grayscale"),
    "idx": ("labels",),
}
_SUPPORTED = (
    ".npy, .npz, .csv, .tsv, an IDX file (MNIST format, optionally gzipped) or a folder of "
    "PNG/JPEG images"
)


def _check_kwargs(kwargs: dict, allowed: tuple[str, ...], what: str) -> None:
    extra = sorted(set(kwargs) - set(allowed))
    if extra:
        ok = ", ".join(allowed) or "none"
        raise ValueError(f"unexpected keyword(s) {', '.join(extra)} for {what}; it accepts {ok}")


def _read_path(path: Path, kwargs: dict) -> RawData:
    """Dispatch a path to its loader by folder/extension, sniffing IDX files."""
    if path.is_dir():
        kind = "images"
    else:
        suffix = path.suffix.lower()
        if suffix in (".npy", ".npz"):
            kind = "array"
        elif suffix in (".csv", ".tsv", ".txt"):
            kind = "csv"
        elif is_idx(path):
            kind = "idx"
        elif suffix in (".png", ".jpg", ".jpeg"):
            raise ValueError(
                f"{path}: a single image; pass the folder that holds the images ({path.parent})"
            )
        else:
            raise ValueError(f"{path}: unsupported file; pass {_SUPPORTED}")
    _check_kwargs(kwargs, _FILE_KWARGS[kind], f"{path} ({kind})")
    loader = {"array": load_array, "csv": load_csv, "images": load_image_folder, "idx": load_idx}
    return loader[kind](path, **kwargs)


def _subset(raw: RawData, n: int | None, generator: torch.Generator | None) -> RawData:
    if n is None:
        return raw
    total = raw.x.shape[0]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= total:
        raise ValueError(f"n must be an int in 1..{total} (the number of examples); got {n!r}")
    if generator is None:
        idx = torch.arange(n)
    else:
        idx = torch.randperm(total, generator=generator, device=generator.device)[:n].cpu()
    labels = None if raw.labels is None else raw.labels[idx]
    return raw._replace(x=raw.x[idx], labels=labels)


def _num_classes(raw: RawData) -> int | None:
    return None if raw.class_names is None else len(raw.class_names)


def _check_range(data_range: object) -> tuple[float, float]:
    ok = isinstance(data_range, (tuple, list)) and len(data_range) == 2
    lo, hi = (float(v) for v in data_range) if ok else (math.nan, math.nan)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"data_range must be (lo, hi) with lo < hi; got {data_range!r}")
    return lo, hi


def image_range(
    raw: RawData, data_range: tuple[float, float] | None = None
) -> tuple[tuple[float, float], str]:
    """The data range of images, mapped onto [-1, 1], and where it came from.

    In order: ``data_range`` if given; the units' known range (0..255 for 8-bit files, 0..16
    for the digits); for floats, the smallest standard range that holds all of them, [0, 1]
    or [-1, 1]; else the file's own min..max (data-dependent: pass ``data_range``, e.g. 0..255
    for 8-bit values stored as floats). Decided on the whole file, never on a subset, so that
    a subset lacking the extreme pixel values is not shifted.
    """
    lo, hi = float(raw.x.min()), float(raw.x.max())
    if data_range is not None:
        rlo, rhi = _check_range(data_range)
        if lo < rlo or hi > rhi:
            raise ValueError(
                f"the data spans {lo:g}..{hi:g}, outside data_range {rlo:g}..{rhi:g}; widen it "
                "to hold every value"
            )
        return (rlo, rhi), "given"
    if raw.value_range is not None:
        known = "the data type (8-bit values)" if raw.value_range == (0.0, 255.0) else None
        return raw.value_range, known or "the data set's known pixel range"
    if lo >= 0 and hi <= 1:
        return (0.0, 1.0), "floats within [0, 1]"
    if lo >= -1 and hi <= 1:
        return (-1.0, 1.0), "floats within [-1, 1]"
    return (lo, hi), "the whole file's min..max"


def load(
    name_or_path: str | Path,
    *,
    split: str = "train",
    n: int | None = None,
    generator: torch.Generator | None = None,
    normalization: Normalization | None = None,
    data_range: tuple[float, float] | None = None,
    **kwargs: object,
) -> Dataset:
    """Load, validate and normalize a built-in set (see ``DATASETS``) or a file/folder.

    - a toy name: ``n`` (default 10000) fresh points drawn with ``generator``, standardized;
      ``noise=`` is passed to ``toy``; ``split`` only names the draw.
    - ``"digits"``: the fixed ``split`` ``"train"``/``"test"``/``"all"`` (see
      ``scorelab.data.digits``), mapped from the pixel range 0..16 to [-1, 1].
    - a path: ``.npy``/``.npz`` (``key``, ``labels_key``), ``.csv``/``.tsv`` (``label_column``,
      ``header``, ``delimiter``), an IDX file (``labels``: the labels file) or a folder of
      images (``size``, ``grayscale``). A 3-D array ``[N, H, W]`` is read as grayscale images
      ``[N, 1, H, W]``. Vectors are standardized; images are mapped to [-1, 1] from
      ``data_range`` (lo, hi) if given, else the range ``image_range`` picks from the whole
      file (0..255 for 8-bit data; floats within [0, 1] or [-1, 1] keep that range; else
      their min..max); ``Dataset.range_source`` says which.

    A string that is a built-in name is the built-in set; pass a ``Path`` (or ``"./digits"``)
    for a file or folder of that name. For files ``split`` only names the data.

    For files and digits, ``n`` keeps the first ``n`` examples, or a random ``n`` drawn with
    ``generator`` if one is given. Pass ``normalization`` (e.g. the training set's) to use it
    instead of fitting one. The data is validated (``validate``) in its own units first.
    """
    is_name = isinstance(name_or_path, str) and name_or_path in DATASETS
    full = None  # images: the whole file, whose range decides the map onto [-1, 1]
    if is_name and name_or_path in TOY_NAMES:
        _check_kwargs(kwargs, ("noise",), f"toy set {name_or_path!r}")
        n = TOY_DEFAULT_N if n is None else n
        x = toy(name_or_path, n, generator=generator, noise=kwargs.get("noise"))
        raw, source = RawData(x, None), name_or_path
    elif is_name:  # digits
        _check_kwargs(kwargs, (), "'digits'")
        raw, source = _subset(load_digits(split), n, generator), "digits"
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise ValueError(
                f"{name_or_path!r} is neither a built-in data set ({', '.join(DATASETS)}) nor an "
                "existing file or folder; check the name or path"
            )
        source = str(path)
        raw = _read_path(path, kwargs)
        if raw.x.ndim == 3:
            raw = raw._replace(x=raw.x.unsqueeze(1))
        full = raw
        if n is not None:  # indices in errors refer to the file: check it whole first
            validate(raw.x, raw.labels, source=source, num_classes=_num_classes(raw))
            raw, source = _subset(raw, n, generator), f"{source} ({n} examples)"

    num_classes = _num_classes(raw)
    validate(raw.x, raw.labels, source=source, num_classes=num_classes)
    x = raw.x.float()
    range_source = None
    if data_range is not None and x.ndim == 2:
        raise ValueError(
            "data_range applies to images; vectors (tabular data) are standardized per column"
        )
    if normalization is None:
        if x.ndim == 2:
            normalization = Normalization.standardize(x)
        else:
            (lo, hi), range_source = image_range(raw if full is None else full, data_range)
            normalization = Normalization.to_unit_range(x, lo, hi)
    elif not isinstance(normalization, Normalization):
        raise ValueError(f"normalization must be a Normalization; got {type(normalization)}")
    return Dataset(
        x=normalization.forward(x),
        labels=raw.labels,
        normalization=normalization,
        name=str(name_or_path),
        split=split,
        num_classes=num_classes,
        class_names=raw.class_names,
        range_source=range_source,
    )


__all__ = [
    "DATASETS",
    "DEFAULT_NOISE",
    "DIGITS_RANGE",
    "DIGITS_SIZES",
    "TOY_NAMES",
    "AmbiguousArrayError",
    "Dataset",
    "Normalization",
    "RawData",
    "image_range",
    "is_idx",
    "load",
    "load_array",
    "load_csv",
    "load_digits",
    "load_idx",
    "load_image_folder",
    "quantization_step",
    "read_idx",
    "toy",
    "validate",
]
