"""validate: every error names the source, the index where it applies, and the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scorelab.data import validate


def vectors(n=6, d=3):
    return torch.arange(n * d, dtype=torch.float32).reshape(n, d) ** 1.5


def with_value(x, index, value):
    x = x.clone()
    x[index] = value
    return x


def test_valid_data_passes():
    validate(vectors(), torch.tensor([0, 1, 2, 0, 1, 2]), num_classes=3)
    imgs = torch.zeros(4, 1, 3, 3)
    imgs[:, 0, 1, 1] = torch.arange(4.0)  # constant border pixels are fine for images
    validate(imgs, np.array([0, 0, 1, 1]))
    validate(np.ones((3, 2)) * np.arange(3)[:, None])  # numpy input


@pytest.mark.parametrize(
    ("x", "labels", "kwargs", "parts"),
    [
        (torch.zeros(0, 3), None, {}, ["data.npy: the data is empty (shape (0, 3))", "check the"]),
        (torch.arange(5.0), None, {}, ["(5,) (1 dims)", "pass x.reshape(-1, 1)"]),
        (torch.ones(4, 5, 5), None, {}, ["(4, 5, 5) (3 dims)", "add a channel axis, x[:, None]"]),
        (torch.ones(2, 1, 1, 1, 1), None, {}, ["5 dims", "reshape to [N, D] or [N, C, H, W]"]),
        (
            with_value(with_value(vectors(), (3, 1), float("nan")), (5, 0), float("inf")),
            None,
            {},
            [
                "2 NaN/inf value(s) in 2 of 6 examples",
                "first is example 4 (counting from 1; x[3, 1] = nan)",
                "remove or impute those examples",
            ],
        ),
        (vectors(1), None, {}, ["only 1 example", "pass at least 2 examples"]),
        (
            torch.stack([torch.arange(4.0), torch.ones(4), torch.arange(4.0) ** 2], 1),
            None,
            {},
            [
                "1 of 3 feature(s) have zero variance",
                "column(s) 2 (counting from 1)",
                "x = x[:, x.std(0) > 0]",
            ],
        ),
        (torch.ones(3, 1, 2, 2), None, {}, ["all 3 examples are identical", "right file, key"]),
        (
            vectors(),
            torch.zeros(4),
            {},
            [
                "labels have shape (4,) but there are 6 examples",
                "one integer label per example, shape [6]",
            ],
        ),
        (
            vectors(),
            torch.tensor([0, 1, 2, 7, 1, 9]),
            {"num_classes": 3},
            [
                "2 label(s) out of range (labels must lie in 0..2)",
                "first is the label of example 4 (counting from 1), 7",
                "remap the labels",
                "pass the right num_classes",
            ],
        ),
        (
            vectors(),
            torch.tensor([0, 1, -1, 0, 1, 0]),
            {},
            [
                "labels must be >= 0",
                "label of example 3 (counting from 1), -1",
                "torch.unique(labels, return_inverse=True)",
            ],
        ),
        (
            vectors(),
            torch.tensor([0, 0.5, 1, 0, 1, 0]),
            {},
            [
                "whole numbers",
                "label of example 2 (counting from 1) is 0.5",
                "integer class indices",
            ],
        ),
        (vectors(), np.array(["a"] * 6, dtype=object), {}, ["integer class indices"]),
    ],
)
def test_errors_name_source_index_and_fix(x, labels, kwargs, parts):
    with pytest.raises(ValueError) as info:
        validate(x, labels, source="data.npy", **kwargs)
    msg = str(info.value)
    assert msg.startswith("data.npy: "), msg
    for part in parts:
        assert part in msg, (part, msg)


def test_bad_num_classes():
    with pytest.raises(ValueError, match=r"num_classes must be a positive int; got 0"):
        validate(vectors(), torch.zeros(6, dtype=torch.int64), num_classes=0)
