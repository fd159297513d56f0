"""``scalars``: cached 0-dim constants for eager inner loops, giving what Python numbers give."""

from __future__ import annotations

import math

import pytest
import torch

from scorelab.densities import scalars

VALUES = (0.1, 1 / 3, -1000.0, 2.0, 0.5, math.inf, 1e-30, 7)
# not ``c / t``: torch computes ``number / tensor`` as ``tensor.reciprocal() * number``, which
# rounds differently from a division by a 0-dim tensor (``scalars``' docstring says so)
OPS = {
    "mul": lambda t, c: t * c,
    "add": lambda t, c: t + c,
    "sub": lambda t, c: t - c,
    "rsub": lambda t, c: c - t,
    "div": lambda t, c: t / c,
    "lt": lambda t, c: t < c,
    "ge": lambda t, c: t >= c,
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_same_results_as_python_numbers(dtype):
    """Every operation the MCMC kernels and closed-form densities use, at values that no
    low-precision format holds exactly: the same dtype and the same bits (NaN where NaN)."""
    x = torch.randn(259, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = (x * 10).to(dtype)  # 259: vectorized lanes and a scalar tail
    consts = scalars(x, *VALUES)
    assert all(c.ndim == 0 and c.device.type == "cpu" for c in consts)
    for value, c in zip(VALUES, consts, strict=True):
        for name, op in OPS.items():
            want, got = op(x, value), op(x, c)
            assert got.dtype == want.dtype, (name, value)
            torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True, msg=name)


def test_cached_and_usable_with_autograd_when_first_made_in_inference_mode():
    x = torch.ones(3)
    with torch.inference_mode():
        (c,) = scalars(x, 0.123456789)  # a value no other test asks for: made here
    assert not c.is_inference()
    assert scalars(x, 0.123456789)[0] is c  # cached per value and precision
    y = torch.ones(3, requires_grad=True)
    (y * c).sum().backward()  # an inference tensor could not be saved for backward
    assert torch.equal(y.grad, torch.full((3,), 0.123456789))


def test_python_numbers_inside_torch_compile():
    """Compiled graphs keep plain numbers (folded into their kernels), with no graph break."""

    def f(x):
        (c,) = scalars(x, 0.5)
        return x * c, isinstance(c, float)

    out, is_number = torch.compile(f, backend="eager", fullgraph=True)(torch.ones(2))
    assert is_number and torch.equal(out, torch.full((2,), 0.5))
    assert not f(torch.ones(2))[1]  # eagerly: a tensor
