"""``scorelab sample``: the default levels and prior, the optimized schedule and data moments
stored in the run folder, explicit --sigmas and --prior, errors worded in flags."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from scorelab.cli.main import main
from scorelab.cli.sample_cmd import MOMENTS_FILE, SCHEDULES_FILE


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "run"
    assert main(["--threads", "1", "train", "--data", "ring", "--n", "400", "--steps", "3",
                 "--batch-size", "16", "--out", str(out)]) == 0  # fmt: skip
    return out


def _record(path):
    with np.load(path) as f:
        return json.loads(str(f["record"])), f["model_units"]


def test_defaults_store_the_data_moments_and_use_the_data_prior(run, capsys):
    from scorelab.cli.common import load_run_data, run_record

    assert main(["sample", str(run), "-n", "20", "--nfe", "6"]) == 0
    record, x = _record(run / "samples.npz")
    assert record["sampler"] == "unipc" and record["nfe"] == 6 and record["prior"] == "data"
    assert len(record["sigmas"]) == 7 and record["sigmas"][0] == 80.0 and x.shape == (20, 2)
    data = load_run_data(run_record(run)).x.double()
    with np.load(run / MOMENTS_FILE) as f:  # the training data's moments, in model units
        np.testing.assert_allclose(f["mean"], data.mean(0).numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(f["cov"], torch.cov(data.T).numpy(), rtol=1e-12, atol=1e-12)


def test_optimized_schedule_is_fitted_once_then_used(run, capsys):
    assert main(["sample", str(run), "-n", "10", "--nfe", "5", "--schedule", "optimized"]) == 0
    assert "stored in" in capsys.readouterr().out
    stored = json.loads((run / SCHEDULES_FILE).read_text())
    levels = stored["levels"]["5"]
    assert len(levels) == 6 and levels[0] == 80.0 and levels[-1] == 0.0
    assert all(a > b for a, b in itertools.pairwise(levels))
    # a later plain call uses it and says so; heun at --nfe 9 runs 5 levels too
    assert main(["sample", str(run), "-n", "10", "--nfe", "9", "--sampler", "heun"]) == 0
    assert "using the optimized schedule" in capsys.readouterr().out
    record, _ = _record(run / "samples.npz")
    np.testing.assert_allclose(record["sigmas"], levels, rtol=1e-5)
    # --schedule default ignores it
    assert main(["sample", str(run), "-n", "10", "--nfe", "5", "--schedule", "default"]) == 0
    assert "using the optimized" not in capsys.readouterr().out
    assert _record(run / "samples.npz")[0]["sigmas"] != record["sigmas"]


def test_explicit_sigmas_and_zero_prior(run):
    assert main(["sample", str(run), "-n", "10", "--sigmas", "10", "1", "0.1", "0",
                 "--prior", "zero"]) == 0  # fmt: skip
    record, _ = _record(run / "samples.npz")
    assert record["sigmas"] == [10.0, 1.0, 0.1, 0.0] and record["nfe"] == 3
    assert record["prior"] == "zero"


def test_process_params_reach_the_process(run):
    """``--process-param`` builds the process with those fields: the flow's few-step grid
    ``t_i = t_max (1 - i / N)`` at 2 steps is t = 0.999, 0.4995, i.e. sigma 999 and ~0.998."""
    assert main(["sample", str(run), "-n", "6", "--process", "flow", "--sampler", "euler",
                 "--nfe", "2", "--process-param", "spacing=linspace"]) == 0  # fmt: skip
    record, _ = _record(run / "samples.npz")
    assert record["process_params"] == {"spacing": "linspace"}
    assert record["sigmas"] == pytest.approx([999.0, 0.4995 / 0.5005, 0.0], rel=1e-5)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--sigmas", "10", "1"], r"--sigmas 10 1: sigmas must end in 0.*end with 0"),
        (["--sigmas", "1", "10", "0"], r"--sigmas 1 10 0: sigmas must decrease strictly"),
        (["--sigmas", "10", "0", "--process", "ve"], "drop --process"),
        (["--process", "ve", "--schedule", "optimized"], "--process steps through its own"),
        (["--sampler", "rk45", "--schedule", "optimized"], "--sampler rk45 runs on levels"),
        (["--nfe", "0"], "--nfe must be a positive int"),
        (["--sampler", "pc", "--nfe", "1"], "--nfe 1 cannot pay for one"),
        (["--process-param", "shift=3"], "name the process too"),
        (["--process", "flow", "--process-param", "shift"], "--process-param expects KEY=VALUE"),
        (["--process", "flow", "--process-param", "rho=7"], "process flow takes t_max"),
        (["--process", "flow", "--process-param", "spacing=x"], "spacing must be"),
    ],
)
def test_errors_name_the_flags(run, args, match):
    with pytest.raises(SystemExit, match=match):
        main(["sample", str(run), "-n", "4", *args])


def test_cache_files_appear_whole_or_not_at_all(tmp_path):
    """Ranks under torchrun store the same data moments at once (through the checkpoints'
    atomic write): while one writes, the path holds the previous whole file (here none), and a
    failed write leaves no partial file."""
    from scorelab.training.checkpoint import write_atomic

    path = tmp_path / MOMENTS_FILE

    def write(f):
        assert not path.exists()  # the half-written file is not at the reader's path
        np.savez(f, mean=np.arange(3.0))

    write_atomic(path, write)
    with np.load(path) as f:
        np.testing.assert_array_equal(f["mean"], np.arange(3.0))

    def fails(f):
        f.write(b"PK")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(path, fails)
    with np.load(path) as f:  # the earlier file is intact and no temporary file is left
        np.testing.assert_array_equal(f["mean"], np.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == [MOMENTS_FILE]
