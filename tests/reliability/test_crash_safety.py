"""A training process killed with SIGKILL at arbitrary moments resumes with nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scorelab.training import load_model
from scorelab.training.checkpoint import load_checkpoint, verify


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "scorelab", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def _wait_for_checkpoints(run: Path, count: int, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if len(list((run / "checkpoints").glob("step-*"))) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint appeared in {run} within {timeout} s")


def test_sigkill_during_training_and_checkpointing_then_resume(tmp_path):
    run = tmp_path / "run"
    # checkpoint every step: a kill very likely lands inside a checkpoint write
    args = ["train", "--data", "moons", "--n", "500", "--steps", "100000", "--batch-size", "32",
            "--checkpoint-every", "1", "--out", str(run)]  # fmt: skip
    for delay in (0.0, 0.37, 0.81):
        proc = _start(args if delay == 0 else ["train", "--resume", str(run), "--steps", "100000"])
        _wait_for_checkpoints(run, 1)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # whatever was interrupted, the newest complete checkpoint loads and verifies
        _, meta, _ = load_checkpoint(run)
        assert meta["step"] >= 1
    kept = [p for p in (run / "checkpoints").glob("step-*") if p.is_dir()]
    assert kept and all(verify(p) is None for p in kept)  # only complete folders get the name
    # a final resume runs to completion from where the last kill left it
    target = meta["step"] + 3
    done = _start(["train", "--resume", str(run), "--steps", str(target)])
    assert done.wait(timeout=120) == 0, done.stderr.read().decode()
    _, meta_end, skipped = load_checkpoint(run)
    assert meta_end["step"] == target and not skipped
    _, record = load_model(run)
    assert record["train"]["data"] == "moons"
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"] == (
        f"step-{target:08d}"
    )


def test_sigint_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run = tmp_path / "run"
    proc = _start(["train", "--data", "moons", "--n", "500", "--steps", "100000", "--batch-size",
                   "32", "--checkpoint-every", "100000", "--out", str(run)])  # fmt: skip
    deadline = time.time() + 120
    while not (run / "log.csv").exists() and time.time() < deadline:  # training has started
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, proc.stderr.read().decode()
    _, meta, skipped = load_checkpoint(run)  # saved on the way out, not by the schedule
    assert meta["step"] >= 1 and not skipped
