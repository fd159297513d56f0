"""Data options (``--data-key``, ``--data-range``, clamping) and the model's device on the
command line (issue 18, items 7, 10 and 12). There is no GPU here: the device plumbing is
tested with a run record that says CUDA; the CUDA tests run only where CUDA exists."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import scorelab.metrics
from scorelab.cli.main import main

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the fallback without CUDA")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def image_npz(tmp_path_factory):
    """An .npz of float images within [0.1, 0.9] (so within [0, 1]) beside a second array."""
    folder = tmp_path_factory.mktemp("data")
    x = np.random.default_rng(0).uniform(0.1, 0.9, size=(64, 1, 4, 4)).astype(np.float32)
    np.savez(folder / "two.npz", imgs=x, extra=np.arange(5.0))
    return folder / "two.npz"


@pytest.fixture(scope="module")
def image_run(image_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "img"
    assert main(["train", "--data", str(image_npz), "--data-key", "imgs", "--steps", "3",
                 "--batch-size", "16", "--out", str(out)]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "moons"
    assert main(["train", "--data", "moons", "--n", "1000", "--steps", "20", "--batch-size", "64",
                 "--out", str(out)]) == 0  # fmt: skip
    return out


def as_cuda_run(run, tmp_path):
    """A copy of ``run`` whose record says it was trained on cuda:0."""
    copy = tmp_path / "cuda-run"
    shutil.copytree(run, copy)
    record = json.loads((copy / "config.json").read_text())
    record["device"] = "cuda:0"
    (copy / "config.json").write_text(json.dumps(record))
    return copy


# -- item 10: data options ----------------------------------------------------------------------
def test_several_arrays_need_data_key_and_the_error_says_so(image_npz, tmp_path):
    with pytest.raises(SystemExit) as err:
        main(["train", "--data", str(image_npz), "--steps", "1", "--out", str(tmp_path / "r")])
    assert str(err.value) == (
        f"error: {image_npz}: cannot tell which array is the data; the file holds imgs, extra: "
        "choose the data with --data-key NAME (e.g. --data-key imgs), or save the data as 'x'"
    )


def test_data_key_and_range_source_are_recorded_and_printed(image_npz, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--data", str(image_npz), "--data-key", "imgs", "--steps", "2",
                 "--batch-size", "16", "--out", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert (
        f"data range 0..1 mapped to [-1, 1] (from floats within [0, 1]; recorded in "
        f"{out}/config.json)" in text
    )
    record = json.loads((out / "config.json").read_text())
    assert record["train"]["data_kwargs"] == {"key": "imgs"}
    assert record["data"]["range_source"] == "floats within [0, 1]"
    assert record["data"]["normalization"] == {"kind": "unit_range", "shift": [0.5],
                                               "scale": [0.5]}  # fmt: skip


def test_data_range_flag(image_npz, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--data", str(image_npz), "--data-key", "imgs", "--data-range", "0,2",
                 "--steps", "2", "--batch-size", "16", "--out", str(out)]) == 0  # fmt: skip
    assert "data range 0..2 mapped to [-1, 1] (from --data-range;" in capsys.readouterr().out
    record = json.loads((out / "config.json").read_text())
    assert record["train"]["data_kwargs"] == {"key": "imgs", "data_range": [0.0, 2.0]}
    assert record["data"]["normalization"]["shift"] == [1.0]
    with pytest.raises(SystemExit):
        main(["train", "--data", str(image_npz), "--data-range", "1"])
    assert "--data-range: expected LO,HI with LO < HI (e.g. --data-range 0,1); got '1'" in (
        capsys.readouterr().err
    )


def test_image_samples_are_clamped_to_the_data_range_unless_no_clamp(image_run, capsys):
    """The run is barely trained, so most raw samples fall outside [0, 1]."""
    assert main(["sample", str(image_run), "-n", "64", "--nfe", "3"]) == 0
    assert "of sample values to the data range 0..1 (--no-clamp keeps them)" in (
        capsys.readouterr().out
    )
    with np.load(image_run / "samples.npz") as f:
        assert f["samples"].min() >= 0 and f["samples"].max() <= 1
        assert np.abs(f["model_units"]).max() <= 1
        assert json.loads(str(f["record"]))["clamped"] is True
    out = image_run / "raw.npz"
    assert main(["sample", str(image_run), "-n", "64", "--nfe", "3", "--no-clamp",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "clamped" not in capsys.readouterr().out
    with np.load(out) as f:
        assert ((f["samples"] < 0) | (f["samples"] > 1)).any()
        assert json.loads(str(f["record"]))["clamped"] is False


def test_vector_samples_are_not_clamped(moons_run, capsys):
    assert main(["sample", str(moons_run), "-n", "50", "--nfe", "3"]) == 0
    assert "clamped" not in capsys.readouterr().out
    with np.load(moons_run / "samples.npz") as f:
        assert json.loads(str(f["record"]))["clamped"] is False


def test_eval_reference_and_inpaint_input_take_data_key(moons_run, tmp_path, capsys):
    rows = np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32)
    held = tmp_path / "held.npz"
    np.savez(held, a=rows, b=rows + 1)
    samples = tmp_path / "s.npy"
    np.save(samples, rows)
    with pytest.raises(SystemExit, match=r"holds a, b: choose the data with --data-key NAME"):
        main(["eval", str(samples), "--reference", str(held)])
    assert main(["eval", str(samples), "--reference", str(held), "--data-key", "b"]) == 0
    assert "40 samples against" in capsys.readouterr().out
    holes = rows[:5].copy()
    holes[:, 1] = np.nan
    np.savez(tmp_path / "in.npz", rows=holes, other=rows[:5])
    with pytest.raises(SystemExit, match=r"holds rows, other: choose the data with --data-key"):
        main(["inpaint", str(moons_run), "--input", str(tmp_path / "in.npz"), "--nfe", "3"])
    assert main(["inpaint", str(moons_run), "--input", str(tmp_path / "in.npz"), "--data-key",
                 "rows", "--nfe", "3", "--out", str(tmp_path / "filled.npz")]) == 0  # fmt: skip
    with np.load(tmp_path / "filled.npz") as f:
        assert np.isfinite(f["inpainted"]).all() and np.allclose(f["inpainted"][:, 0], rows[:5, 0])


# -- item 7: floors at the samples' size, warnings for small n ----------------------------------
def test_eval_computes_the_floor_at_n_and_warns_for_small_n(moons_run, monkeypatch, capsys):
    assert main(["sample", str(moons_run), "-n", "30", "--nfe", "3",
                 "--out", str(moons_run / "few.npz")]) == 0  # fmt: skip
    capsys.readouterr()
    sizes = []
    real = scorelab.metrics.data_floor

    def spy(data, reference, n, **kw):
        sizes.append((len(data), len(reference), n))
        return real(data, reference, n, **kw)

    monkeypatch.setattr(scorelab.metrics, "data_floor", spy)
    assert main(["eval", str(moons_run / "few.npz")]) == 0
    text = capsys.readouterr().out
    assert sizes == [(1000, 1000, 30)]  # 30 of the 1000 training points against the held-out
    assert "data floor: 30 training examples against the same data" in text
    assert (
        "warning: kl_knn from 30 samples is unreliable: its nearest-neighbour radii are "
        "inflated; use at least 100" in text
    )
    result = json.loads((moons_run / "few.eval.json").read_text())
    assert result["floor_n"] == 30 and len(result["warnings"]) == 2  # kl_knn, js_knn


# -- item 12: the model's device ---------------------------------------------------------------
@no_cuda
def test_a_run_trained_on_cuda_falls_back_to_cpu_with_a_note(moons_run, tmp_path, capsys):
    run = as_cuda_run(moons_run, tmp_path)
    note = (
        "note: this run was trained on cuda:0, but CUDA is not available on this machine; "
        "using cpu (choose with --device)"
    )
    assert main(["sample", str(run), "-n", "20", "--nfe", "3"]) == 0
    assert note in capsys.readouterr().out
    assert main(["eval", str(run / "samples.npz")]) == 0
    assert note in capsys.readouterr().out
    assert main(["denoise", str(run), "--sigma", "0.5", "-n", "20"]) == 0
    assert note in capsys.readouterr().out
    assert main(["inpaint", str(run), "-n", "4", "--nfe", "3"]) == 0
    assert note in capsys.readouterr().out
    # --device cpu is honoured over the record: no fallback, so no note
    assert main(["sample", str(run), "-n", "20", "--nfe", "3", "--device", "cpu"]) == 0
    assert "note:" not in capsys.readouterr().out


@no_cuda
@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda", "error: --device cuda: CUDA is not available on this machine; use --device cpu"),
        ("gpu0", "error: --device 'gpu0' is not a device; use cpu, cuda, cuda:1 or mps"),
    ],
)
def test_an_unavailable_device_is_a_clear_error(moons_run, device, message):
    run = str(moons_run)
    commands = (["sample", run], ["denoise", run], ["eval", run, "--nll", "test"], ["inpaint", run])
    for cmd in commands:
        with pytest.raises(SystemExit) as err:
            main([*cmd, "--device", device])
        assert str(err.value) == message


@needs_cuda
def test_sample_and_eval_on_cuda(moons_run, tmp_path, capsys):
    out = tmp_path / "cuda.npz"
    assert main(["sample", str(moons_run), "-n", "50", "--nfe", "3", "--device", "cuda",
                 "--out", str(out)]) == 0  # fmt: skip
    assert main(["eval", str(out), "--device", "cuda"]) == 0
    assert main(["eval", str(moons_run), "--nll", "test", "-n", "5", "--device", "cuda"]) == 0
    assert main(["denoise", str(moons_run), "-n", "20", "--device", "cuda"]) == 0
    assert "note:" not in capsys.readouterr().out
