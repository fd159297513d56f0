"""Checks run on data before training starts; each error names the source, the first bad example
(counting from 1, as are the lines and columns of files) and the fix."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from scorelab._utils import as_tensor


def _bad_index(mask: Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0])


def validate(
    x: Tensor | np.ndarray,
    labels: Tensor | np.ndarray | None = None,
    *,
    source: str = "data",
    num_classes: int | None = None,
) -> None:
    """Raise ``ValueError`` unless ``x`` is trainable data ``[N, D]`` or ``[N, C, H, W]``.

    Checks, in order: not empty, 2 or 4 dims, all values finite, not constant (vectors: no
    feature with zero variance; images: not all examples identical), and ``labels`` (if given)
    one integer in ``0..num_classes-1`` per example. ``source`` (a file path or a name) starts
    every message.
    """
    t = as_tensor(x, source)
    shape = tuple(t.shape)
    if t.numel() == 0:
        raise ValueError(
            f"{source}: the data is empty (shape {shape}); check the path, the file's contents "
            "and any filter or split that selected no examples"
        )
    if t.ndim not in (2, 4):
        if t.ndim == 1:
            fix = "for N scalars pass x.reshape(-1, 1); for one example pass x.reshape(1, -1)"
        elif t.ndim == 3:
            fix = "for grayscale images add a channel axis, x[:, None]; for vectors flatten, "
            fix += "x.reshape(len(x), -1)"
        else:
            fix = "reshape to [N, D] or [N, C, H, W]"
        raise ValueError(
            f"{source}: the data has shape {shape} ({t.ndim} dims); expected vectors [N, D] or "
            f"images [N, C, H, W]: {fix}"
        )
    n = shape[0]
    finite = torch.isfinite(t)
    if not finite.all():
        bad_examples = (~finite).flatten(1).any(1)
        first = _bad_index(~finite)
        raise ValueError(
            f"{source}: {int((~finite).sum())} NaN/inf value(s) in {int(bad_examples.sum())} of "
            f"{n} examples; the first is example {first[0] + 1} (counting from 1; "
            f"x[{', '.join(map(str, first))}] = {t[first].item()}); "
            "remove or impute those examples, e.g. x = x[torch.isfinite(x).flatten(1).all(1)]"
        )
    if n < 2:
        raise ValueError(
            f"{source}: only 1 example (shape {shape}); a distribution cannot be learned from one "
            "point: pass at least 2 examples"
        )
    if t.ndim == 2:
        const = (t == t[:1]).all(0)
        if const.any():
            cols = [int(j) + 1 for j in const.nonzero()[:, 0]]  # counting from 1
            shown = ", ".join(map(str, cols[:10])) + (", ..." if len(cols) > 10 else "")
            raise ValueError(
                f"{source}: {len(cols)} of {shape[1]} feature(s) have zero variance (the same "
                f"value in all {n} examples): column(s) {shown} (counting from 1); drop them, e.g. "
                "x = x[:, x.std(0) > 0], or check that the right columns were loaded"
            )
    elif (t == t[:1]).all():
        raise ValueError(
            f"{source}: the data is constant (all {n} examples are identical, zero variance); "
            "check that the right file, key or folder was loaded"
        )
    if labels is not None:
        _validate_labels(labels, n, source, num_classes)


def _validate_labels(labels: object, n: int, source: str, num_classes: int | None) -> None:
    try:
        lab = labels if isinstance(labels, Tensor) else torch.as_tensor(np.asarray(labels))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"{source}: labels must be an array of integer class indices; got {type(labels)}"
        ) from err
    if lab.ndim != 1 or lab.shape[0] != n:
        raise ValueError(
            f"{source}: labels have shape {tuple(lab.shape)} but there are {n} examples; pass one "
            f"integer label per example, shape [{n}]"
        )
    if lab.dtype == torch.bool or lab.is_complex():
        raise ValueError(f"{source}: labels must be integers; got dtype {lab.dtype}")
    if lab.is_floating_point():
        bad = ~torch.isfinite(lab) | (lab != lab.round())
        if bad.any():
            i = _bad_index(bad)[0]
            raise ValueError(
                f"{source}: labels must be whole numbers (class indices); the label of example "
                f"{i + 1} (counting from 1) is {lab[i].item()}: pass integer class indices 0..K-1"
            )
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
    hi = num_classes
    bad = lab < 0 if hi is None else (lab < 0) | (lab >= hi)
    if bad.any():
        i = _bad_index(bad)[0]
        allowed = "must be >= 0" if hi is None else f"must lie in 0..{hi - 1}"
        raise ValueError(
            f"{source}: {int(bad.sum())} label(s) out of range (labels {allowed}); the first is "
            f"the label of example {i + 1} (counting from 1), {lab[i].item():g}: remap the labels "
            "to 0..K-1, e.g. "
            "labels = torch.unique(labels, return_inverse=True)[1]"
            + ("" if hi is None else ", or pass the right num_classes")
        )
