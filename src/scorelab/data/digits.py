"""The 8x8 handwritten digits bundled with scikit-learn (UCI optdigits, Alpaydin & Kaynak 1998).

1797 grayscale images of the digits 0-9, pixel values 0..16 (counts of set pixels in 4x4
blocks of the original 32x32 bitmaps); no download. The split is fixed:
``sklearn.model_selection.train_test_split`` of the example indices with ``test_size=0.2``,
``random_state=0``, stratified by label, each side kept in the original order:

- train: 1437 examples;
- test: 360 examples, per class 0-9: 36, 36, 35, 37, 36, 37, 36, 36, 35, 36.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from scorelab.data.files import RawData

DIGITS_SPLITS = ("train", "test", "all")
DIGITS_SIZES = {"train": 1437, "test": 360, "all": 1797}
DIGITS_RANGE = (0.0, 16.0)


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits as sk_load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("the digits data needs scikit-learn: pip install scikit-learn") from err
    bunch = sk_load_digits()
    images = bunch.images.astype(np.float32)  # [1797, 8, 8], 0..16
    target = bunch.target.astype(np.int64)
    train, test = train_test_split(
        np.arange(len(target)), test_size=0.2, random_state=0, stratify=target
    )
    return images, target, np.sort(train), np.sort(test)


def load_digits(split: str = "train") -> RawData:
    """The digits ``split`` (``"train"``, ``"test"`` or ``"all"``) as [N, 1, 8, 8], 0..16."""
    if split not in DIGITS_SPLITS:
        raise ValueError(
            f"unknown digits split {split!r}; choose one of {', '.join(DIGITS_SPLITS)}"
        )
    images, target, train, test = _digits()
    idx = {"train": train, "test": test, "all": np.arange(len(target))}[split]
    x = torch.from_numpy(images[idx].copy()).unsqueeze(1)
    labels = torch.from_numpy(target[idx].copy())
    return RawData(x, labels, tuple(str(k) for k in range(10)), DIGITS_RANGE)
