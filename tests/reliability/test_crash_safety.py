"""A training process killed with SIGKILL at arbitrary moments resumes with nothing lost, and
one stopped by SIGINT, SIGTERM or SIGUSR1 saves a checkpoint, exits 128 + signum and resumes.
Every process a test starts is killed in a ``finally``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scorelab.training import load_model, resume
from scorelab.training.checkpoint import load_checkpoint, verify


def _ignore_sigint() -> None:
    """What a shell does to a background job: SIGINT inherited as ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _started(args: list[str]) -> Iterator[subprocess.Popen]:
    """``python -m scorelab ARGS`` as a background job; killed on the way out, whatever happens."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "scorelab", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_ignore_sigint)  # fmt: skip
    try:
        yield proc
    finally:
        proc.kill()
        proc.communicate()


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
        again = ["train", "--resume", str(run), "--steps", "100000"]
        with _started(args if delay == 0 else again) as proc:
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
    with _started(["train", "--resume", str(run), "--steps", str(target)]) as done:
        _, err = done.communicate(timeout=120)
        assert done.returncode == 0, err.decode()
    _, meta_end, skipped = load_checkpoint(run)
    assert meta_end["step"] == target and not skipped
    _, record = load_model(run)
    assert record["train"]["data"] == "moons"
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"] == (
        f"step-{target:08d}"
    )


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGUSR1"])
def test_a_stop_signal_saves_a_checkpoint_exits_128_plus_signum_and_resumes(tmp_path, sig):
    """Ctrl-C, a scheduler's SIGTERM and Slurm's SIGUSR1 warning: the step ends, a checkpoint is
    written (not by the schedule: checkpoint_every is never reached), the exit code is
    128 + signum, and the run continues from that step. SIGINT is delivered to a process that
    inherited it as ignored, as a background job does."""
    signum = getattr(signal, sig)
    run = tmp_path / "run"
    args = ["train", "--data", "moons", "--n", "500", "--steps", "100000", "--batch-size", "32",
            "--checkpoint-every", "100000", "--out", str(run)]  # fmt: skip
    with _started(args) as proc:
        deadline = time.time() + 120
        while not (run / "log.csv").exists() and time.time() < deadline:  # training started
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signum, err.decode()
    _, meta, skipped = load_checkpoint(run)
    assert meta["step"] >= 1 and not skipped
    assert f"stopped by {sig} at step {meta['step']}" in out.decode()
    assert f"scorelab train --resume {run}" in out.decode()
    res = resume(run, steps=meta["step"] + 2, progress=False)
    assert res.step == meta["step"] + 2 and len(res.losses) == 2
