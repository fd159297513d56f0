"""Normalization: exact inverse, the two constructors, and the JSON round trip."""

from __future__ import annotations

import json

import pytest
import torch

from scorelab.data import Normalization

F64 = torch.float64


def data(dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([1e-3, 5.0, 300.0], dtype=dtype)
    shift = torch.tensor([7.0, -2.0, 1e4], dtype=dtype)
    return torch.randn(200, 3, generator=g, dtype=dtype) * scale + shift


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_standardize_round_trip(dtype):
    x = data(dtype)
    norm = Normalization.standardize(x)
    y = norm.forward(x)
    assert y.dtype == dtype
    assert torch.allclose(y.double().mean(0), torch.zeros(3, dtype=F64), atol=1e-5)
    assert torch.allclose(y.double().std(0, correction=0), torch.ones(3, dtype=F64), atol=1e-5)
    back = norm.inverse(y)
    assert back.dtype == dtype
    # float rounding: y is rounded once (relative eps), then scaled back; x is rounded once
    eps = torch.finfo(dtype).eps
    scale, shift = torch.tensor(norm.scale, dtype=F64), torch.tensor(norm.shift, dtype=F64)
    tol = 2 * eps * (x.double().abs() + shift.abs() + scale * y.double().abs())
    assert ((back.double() - x.double()).abs() <= tol).all()
    assert torch.equal(norm(x), y)


def test_constant_feature_gets_unit_scale():
    x = torch.stack([torch.arange(5.0), torch.full((5,), 3.0)], 1)
    norm = Normalization.standardize(x)
    assert norm.scale[1] == 1.0 and norm.shift[1] == 3.0
    assert torch.allclose(norm.inverse(norm.forward(x)), x, rtol=0, atol=1e-6)


def test_unit_range_images():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (6, 3, 4, 4), generator=g).float()
    norm = Normalization.to_unit_range(x, 0, 255)
    assert norm.lo == (0.0,) and norm.hi == (255.0,)
    y = norm.forward(x)
    assert y.min() >= -1 and y.max() <= 1
    assert torch.equal(norm.forward(torch.tensor([0.0, 255.0])), torch.tensor([-1.0, 1.0]))
    assert torch.allclose(norm.inverse(y), x, rtol=0, atol=1e-4)
    assert torch.equal(
        norm.inverse(torch.tensor([[-3.0, 0.0, 3.0]]), clamp=True),
        torch.tensor([[0.0, 127.5, 255.0]]),
    )
    # default range: the data's min and max
    auto = Normalization.to_unit_range(torch.tensor([[2.0], [4.0], [10.0]]))
    assert auto.lo == (2.0,) and auto.hi == (10.0,)
    assert Normalization.to_unit_range(lo=0, hi=16).shift == (8.0,)


def test_dict_round_trip_is_json_safe():
    x = data()
    for norm in (
        Normalization.standardize(x),
        Normalization.to_unit_range(lo=0, hi=255),
        Normalization.identity(),
    ):
        d = json.loads(json.dumps(norm.to_dict()))
        back = Normalization.from_dict(d)
        assert back == norm
        assert torch.equal(back.inverse(back.forward(x)), norm.inverse(norm.forward(x)))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Normalization("zscore", (0.0,), (1.0,)), r"kind must be one of identity"),
        (lambda: Normalization("standardize", (0.0, 1.0), (1.0,)), r"equal length .* 2 and 1"),
        (lambda: Normalization("standardize", (0.0,), (0.0,)), r"scale must be finite and > 0"),
        (lambda: Normalization("standardize", (float("nan"),), (1.0,)), r"shift must be finite"),
        (lambda: Normalization.standardize(torch.ones(2, 3, 4)), r"standardize needs vectors"),
        (lambda: Normalization.to_unit_range(torch.ones(3)), r"hi > lo.*constant data"),
        (lambda: Normalization.to_unit_range(), r"needs x, or both lo and hi"),
        (lambda: Normalization.to_unit_range(lo=1, hi=0), r"hi > lo; got lo=1.0, hi=0.0"),
        (lambda: Normalization.from_dict({"kind": "identity"}), r"missing shift, scale"),
        (
            lambda: Normalization.standardize(torch.ones(4, 2)).forward(torch.ones(4, 3)),
            r"shape \(4, 3\) but this normalization has 2 per-feature values",
        ),
        (
            lambda: Normalization.standardize(torch.randn(4, 2)).inverse(
                torch.ones(4, 2), clamp=True
            ),
            r"clamp=True needs a unit_range normalization",
        ),
        (lambda: Normalization.identity().forward(torch.ones(3, dtype=torch.int64)), r"floating"),
    ],
)
def test_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()
