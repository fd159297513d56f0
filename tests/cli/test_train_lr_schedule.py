"""``scorelab train --lr-schedule``: the flag reaches the run's config and its optimizer."""

from __future__ import annotations

import csv
import json

import pytest

from scorelab.cli.main import main
from scorelab.training.trainer import lr_at


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_schedule_flag_sets_the_runs_decay(tmp_path, schedule):
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        "moons",
        "--n",
        "64",
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--warmup-steps",
        "1",
        "--lr-schedule",
        schedule,
        "--out",
        str(run),
    ]
    assert main(args) == 0  # fmt: skip
    assert json.loads((run / "config.json").read_text())["train"]["lr_schedule"] == schedule
    with (run / "log.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    # the logged rate is the last update's (step 3 of 4): linear 0.01 * 1/4, cosine
    # 0.01 * (1 + cos(3 pi / 4)) / 2 ~ 0.00146; a constant rate would log 0.01
    expected = {"linear": 0.0025, "cosine": 0.01 * (1 - 0.5**0.5) / 2}[schedule]
    assert float(last["lr"]) == pytest.approx(expected, rel=1e-3)
    assert lr_at(3, 0.01, 1, 4, schedule) == pytest.approx(expected)


def test_lr_schedule_flag_overrides_the_config_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('data = "moons"\nn = 64\nsteps = 2\nbatch_size = 8\nlr_schedule = "linear"\n')
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--lr-schedule", "cosine", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["lr_schedule"] == "cosine"


def test_unknown_lr_schedule_is_refused_naming_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--lr-schedule", "step", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert "--lr-schedule" in err and "cosine" in err
