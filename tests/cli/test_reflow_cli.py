"""``scorelab train --objective flow_matching``, ``scorelab reflow`` and ``sample --process flow``
end to end on tiny runs; flag errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scorelab.cli.main import main

TINY = ["--data", "moons", "--n", "300", "--steps", "6", "--batch-size", "32", "--device", "cpu"]


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-flow") / "fm"
    code = main(["--threads", "1", "train", *TINY, "--objective", "flow_matching", "--coupling",
                 "ot", "--time-sampling", "logit_normal", "--out", str(out)])  # fmt: skip
    assert code == 0
    return out


def test_flow_matching_trains_a_velocity_model_by_default(flow_run):
    record = json.loads((flow_run / "config.json").read_text())
    assert record["train"]["parameterization"] == "velocity"
    assert record["model"]["parameterization"] == "velocity"
    assert record["train"]["objective_kwargs"] == {"time_sampling": "logit_normal",
                                                   "coupling": "ot"}  # fmt: skip


def test_flow_matching_keeps_a_named_parameterization(tmp_path):
    out = tmp_path / "edm-precond"
    args = [*TINY, "--objective", "flow_matching", "--parameterization", "edm"]
    assert main(["train", *args, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["parameterization"] == "edm"


def test_flow_flags_need_the_flow_objective(tmp_path, capsys):
    with pytest.raises(SystemExit, match="apply to --objective flow_matching"):
        main(["train", *TINY, "--coupling", "ot", "--out", str(tmp_path / "x")])


def test_reflow_command_end_to_end(flow_run, tmp_path, capsys):
    out = tmp_path / "rf"
    code = main(["--threads", "1", "reflow", str(flow_run), "--out", str(out), "--pairs", "64",
                 "--steps", "3", "--nfe", "4", "--eval-n", "64"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "teacher" in text and "reflow" in text
    rows = json.loads((out / "reflow.json").read_text())["compare"]
    assert [r["nfe"] for r in rows] == [1, 2, 4, 8]
    assert all(np.isfinite([r["teacher"], r["reflow"]]).all() for r in rows)
    # a reflow run continues with train --resume, on its saved pairs
    assert main(["train", "--resume", str(out), "--steps", "4"]) == 0
    assert "to step 4" in capsys.readouterr().out
    samples = tmp_path / "s.npz"
    code = main(["sample", str(out), "--process", "flow", "--sampler", "euler", "--nfe", "2",
                 "-n", "20", "--out", str(samples)])  # fmt: skip
    assert code == 0 and np.load(samples)["samples"].shape == (20, 2)


def test_reflow_command_errors(flow_run, tmp_path):
    with pytest.raises(SystemExit, match="not a scorelab run config"):
        main(["reflow", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()  # a bad RUN_DIR claims no --out
    with pytest.raises(SystemExit) as exit_info:  # argparse: only deterministic samplers
        main(["reflow", str(flow_run), "--out", str(tmp_path / "p"), "--sampler", "ddpm"])
    assert exit_info.value.code == 2


def test_reflow_sampler_choices_equal_the_library():
    from scorelab.cli.reflow_cmd import ODE_SAMPLERS
    from scorelab.training import reflow

    assert ODE_SAMPLERS == reflow.ODE_SAMPLERS
