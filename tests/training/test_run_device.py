"""``run_device``: a trained model runs where it was trained, or on the CPU with a note where this
machine lacks that device; an explicit device that is missing is an error (issue 18, item 12).
CUDA's presence is monkeypatched, so these run the same on every machine."""

from __future__ import annotations

import pytest
import torch

from scorelab.training import run_device


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_the_recorded_device_is_used_where_it_exists(two_gpus):
    assert run_device({"device": "cuda:1"}) == (torch.device("cuda:1"), None)
    assert run_device({"device": "cpu"}) == (torch.device("cpu"), None)


def test_a_missing_recorded_device_falls_back_to_cpu_with_a_note(two_gpus, monkeypatch):
    dev, note = run_device({"device": "cuda:3"})
    assert dev == torch.device("cpu")
    assert note == (
        "this run was trained on cuda:3, but this machine has 2 CUDA device(s), cuda:0..cuda:1; "
        "using cpu"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dev, note = run_device({"device": "cuda"})
    assert dev == torch.device("cpu") and "but CUDA is not available on this machine" in note


def test_runs_without_a_recorded_device_use_the_configured_one(no_gpu):
    """Runs written before the device was recorded: the config's device ('auto' picks here)."""
    assert run_device({"train": {"device": "cpu"}}) == (torch.device("cpu"), None)
    assert run_device({"train": {"device": "auto"}}) == (torch.device("cpu"), None)


def test_an_explicit_device_wins_and_must_exist(no_gpu):
    assert run_device({"device": "cuda:0"}, "cpu") == (torch.device("cpu"), None)
    with pytest.raises(ValueError, match="device 'cuda' is not available: CUDA is not available"):
        run_device({"device": "cpu"}, "cuda")
