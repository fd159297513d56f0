"""One run per output folder, for every command that writes one: a folder that holds files is
refused (naming --overwrite, --out DIR and, for train, --resume); --overwrite clears only what
scorelab wrote and says what it removed."""

from __future__ import annotations

import json
import re

import pytest

from scorelab.cli.main import main

MCMC = ["mcmc", "gaussian", "--param", "dim=2", "--chains", "2", "--steps", "20", "--warmup", "10"]
TRAIN = ["train", "--data", "moons", "--n", "200", "--steps", "2", "--batch-size", "8"]


def test_mcmc_refuses_a_used_folder_and_overwrite_replaces_it(tmp_path, capsys):
    out = tmp_path / "mcmc"
    assert main([*MCMC, "--out", str(out)]) == 0
    with pytest.raises(SystemExit) as err:
        main([*MCMC, "--seed", "1", "--out", str(out)])
    assert str(err.value) == (
        f"error: --out {out} already holds mcmc.png, run.json, samples.npz, summary.txt; pass "
        "--overwrite to replace it, or choose another folder with --out DIR"
    )
    assert json.loads((out / "run.json").read_text())["config"]["seed"] == 0  # untouched
    capsys.readouterr()
    assert main([*MCMC, "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    text = capsys.readouterr().out
    assert f"--overwrite: removed mcmc.png, run.json, samples.npz, summary.txt from {out}" in text
    assert json.loads((out / "run.json").read_text())["config"]["seed"] == 1


def test_overwrite_never_clears_a_folder_scorelab_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as err:
        main([*MCMC, "--out", str(tmp_path), "--overwrite"])
    assert f"--overwrite refuses to clear {tmp_path}" in str(err.value)
    assert "empty it yourself or choose another folder" in str(err.value)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_train_into_a_run_names_resume_overwrite_and_out(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run)]) == 0
    with pytest.raises(SystemExit) as err:
        main([*TRAIN, "--data", "ring", "--out", str(run)])
    assert str(err.value) == (
        f"error: --out {run} already holds checkpoints, config.json, log.csv; continue it with "
        f"scorelab train --resume {run}, pass --overwrite to replace it, or choose another "
        "folder with --out DIR"
    )
    assert main([*TRAIN, "--data", "ring", "--out", str(run), "--overwrite"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["data"] == "ring"
    with pytest.raises(SystemExit, match="give only one"):
        main(["train", "--resume", str(run), "--overwrite"])


def test_demo_and_compare_refuse_used_folders_before_any_work(tmp_path):
    (tmp_path / "langevin-1d").mkdir()
    (tmp_path / "langevin-1d" / "result.json").write_text('{"claim": "earlier"}')
    with pytest.raises(
        SystemExit, match=re.escape(f"--out {tmp_path / 'langevin-1d'} already holds")
    ):
        main(["demo", "langevin-1d", "--out", str(tmp_path), "--quick"])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "old.txt").write_text("")
    with pytest.raises(SystemExit, match=re.escape("already holds old.txt; pass --overwrite")):
        main(["compare", "--out", str(tmp_path / "c"), "--quick"])


def test_train_help_names_the_default_folder(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "scorelab-out/train" in capsys.readouterr().out
