"""Errors written for the command line: flags and data-file fixes instead of Python snippets,
examples counted from 1 (and said so), and a named density's parameters listed."""

from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest
import torch

from scorelab import data, densities, mcmc
from scorelab.cli.common import CLI_WORDING, cli_wording
from scorelab.cli.main import main

# Python-isms that must not reach a command-line user
PYTHON = re.compile(r"\b\w+=(\S|$)|x\.reshape|x\[:, |torch\.|labels = ")


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _mixed_size_images(root):
    from PIL import Image

    root.mkdir()
    for i, size in enumerate(((10, 12), (16, 16))):
        Image.fromarray(np.zeros((*size, 3), dtype=np.uint8) + i).save(root / f"{i}.png")
    return root


# One library error per CLI_WORDING entry: (what raises it, what the command line says instead)
def _mcmc(target, kernel, **kw):
    mcmc.sample(target, kernel, chains=2, steps=2, warmup=0, generator=_gen(), **kw)


TRIGGERS = {
    "step-size-needed": (lambda tmp: _mcmc(densities.Banana(), "random_walk"), "--step-size"),
    "step-size-value": (
        lambda tmp: _mcmc(densities.Banana(), "mala", step_size=-1.0),
        "--step-size must be",
    ),
    "leapfrog": (lambda tmp: _mcmc(densities.Banana(), "hmc", n_leapfrog=0), "--leapfrog must"),
    "init": (
        lambda tmp: _mcmc(densities.from_log_prob(lambda x: x[:, 0] * 0 - math.inf, 2), "mala"),
        "start uniformly in [-2, 2]^dim",
    ),
    "clamp": (
        lambda tmp: data.Normalization.identity().inverse(torch.zeros(2, 2), clamp=True),
        "clamping needs a unit_range normalization (a known value range); this one is "
        "'identity': pass --no-clamp",
    ),
    "nan": (
        lambda tmp: data.validate(torch.tensor([[0.0, 1], [1, 0], [2, math.nan]])),
        "example 3 (counting from 1; x[2, 1] = nan); remove or impute those examples in the data",
    ),
    "1-d": (lambda tmp: data.validate(torch.arange(5.0)), "one column [N, 1]"),
    "3-d": (lambda tmp: data.validate(torch.rand(4, 5, 5)), "[N, 1, H, W] (with a channel axis)"),
    "zero-variance": (
        lambda tmp: data.validate(torch.tensor([[0.0, 1], [1, 1], [2, 1]])),
        "column(s) 2 (counting from 1); drop those columns from the data file",
    ),
    "labels": (
        lambda tmp: data.validate(torch.rand(3, 2), torch.tensor([0, -1, 1])),
        "label of example 2 (counting from 1), -1: remap the labels to 0..K-1 in the data file",
    ),
    "image-size": (
        lambda tmp: data.load(_mixed_size_images(tmp / "imgs")),
        "data_kwargs = { size = [",
    ),
    "label-column": (
        lambda tmp: (tmp / "t.csv").write_text("1,2\n3,x\n") and data.load(tmp / "t.csv"),
        "data_kwargs = { label_column = ... } in a --config TOML file",
    ),
}


def test_every_wording_has_a_trigger():
    assert len(TRIGGERS) == len(CLI_WORDING)


@pytest.mark.parametrize("case", list(TRIGGERS))
def test_library_errors_are_reworded_for_the_command_line(case, tmp_path):
    trigger, cli_text = TRIGGERS[case]
    with pytest.raises(ValueError) as info:
        trigger(tmp_path)
    message = str(info.value)
    worded = cli_wording(message)
    assert worded != message, f"no CLI_WORDING pattern matches the library's {message!r}"
    assert cli_text in worded
    assert not PYTHON.search(worded), worded


def test_every_named_density_lists_its_parameters(tmp_path):
    for name, (factory, _) in densities.NAMED.items():
        with pytest.raises(SystemExit) as info:
            main(["mcmc", name, "--param", "c=3", "--out", str(tmp_path / name)])
        text = str(info.value)
        assert f"density {name!r} has no parameter 'c'; its parameters are" in text
        for param in inspect.signature(factory).parameters.values():
            assert f"{param.name} (default {param.default})" in text


def test_banana_parameters_on_the_command_line(tmp_path):
    with pytest.raises(SystemExit, match=r"no parameter 'c'; its parameters are a \(default "):
        main(["mcmc", "banana", "--param", "c=3", "--out", str(tmp_path)])


def test_mcmc_errors_name_flags(tmp_path):
    with pytest.raises(SystemExit, match=r"no acceptance rate to tune; pass --step-size$"):
        main(["mcmc", "banana", "--kernel", "random_walk", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match=r"^error: --step-size must be finite and > 0"):
        main(["mcmc", "banana", "--step-size", "-1", "--out", str(tmp_path / "b")])


def test_train_on_a_bad_file_counts_examples_from_1(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 2))
    x[6, 1] = np.nan  # the 7th example
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", str(tmp_path / "nan.npy"), "--steps", "1",
              "--out", str(tmp_path / "run")])  # fmt: skip
    text = str(info.value)
    assert "the first is example 7 (counting from 1; x[6, 1] = nan)" in text
    assert "remove or impute those examples in the data file" in text
    assert not PYTHON.search(text), text
