"""One run per folder: the trainer refuses a folder holding files unless asked to overwrite,
refuses to resume a checkpoint of another run, and stops cleanly on a signal."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest

from scorelab.errors import Interrupted
from scorelab.training import TrainConfig, Trainer, load_model, resume, train
from scorelab.training.checkpoint import _sha256, load_checkpoint


def _cfg(out, **kw) -> TrainConfig:
    base = dict(data="moons", n=200, steps=2, batch_size=8, out=str(out),
                net_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8})  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_default_run_folder_is_under_scorelab_out():
    assert TrainConfig().out == "scorelab-out/train"


def test_train_refuses_a_folder_that_holds_files_and_names_the_arguments(tmp_path):
    run = tmp_path / "run"
    train(_cfg(run), progress=False)
    with pytest.raises(ValueError) as err:
        train(_cfg(run, data="ring"), progress=False)
    msg = str(err.value)
    assert f"out folder {run} already holds checkpoints, config.json, log.csv" in msg
    assert f"resume({str(run)!r})" in msg and "overwrite=True" in msg
    assert load_checkpoint(run)[1]["train"]["data"] == "moons"  # untouched


def test_overwrite_clears_a_scorelab_run_and_says_what_it_removed(tmp_path, capsys):
    run = tmp_path / "run"
    train(_cfg(run, steps=3), progress=False)
    capsys.readouterr()
    train(_cfg(run, data="ring"), progress=False, overwrite=True)
    assert f"removed checkpoints, config.json, log.csv from {run}" in capsys.readouterr().out
    _, meta, _ = load_checkpoint(run)
    assert meta["step"] == 2 and meta["train"]["data"] == "ring"
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-00000002"]


def test_overwrite_refuses_a_folder_scorelab_did_not_write(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match=r"overwrite=True refuses to clear .*empty it yourself"):
        train(_cfg(tmp_path), progress=False, overwrite=True)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_a_checkpoint_of_another_run_is_refused_not_resumed(tmp_path):
    """The reported mix-up: a ring run's step-6 checkpoint sits beside a moons run's step-2 one;
    resume took the ring weights under the moons config and pruned the moons checkpoint."""
    ring, moons = tmp_path / "ring", tmp_path / "moons"
    train(_cfg(ring, data="ring", steps=6), progress=False)
    train(_cfg(moons), progress=False)
    shutil.copytree(ring / "checkpoints" / "step-00000006", moons / "checkpoints" / "step-00000006")
    with pytest.raises(ValueError) as err:
        resume(moons, steps=8, progress=False)
    msg = str(err.value)
    assert "step-00000006 belongs to another run" in msg
    assert "data 'ring' there, 'moons' in config.json" in msg and "mixes two runs" in msg
    assert (moons / "checkpoints" / "step-00000002").exists()  # nothing pruned
    with pytest.raises(ValueError, match="belongs to another run"):
        load_model(moons)
    # the same run resumes with a larger step count (steps and out may change)
    shutil.rmtree(moons / "checkpoints" / "step-00000006")
    assert resume(moons, steps=4, progress=False).step == 4


def test_sigterm_in_process_ends_the_step_saves_and_restores_handlers(tmp_path):
    """SIGTERM during step 3 lets step 3 finish, saves step 3, raises Interrupted(SIGTERM); the
    handlers from before training (a custom SIGTERM one, and SIGINT ignored) come back."""
    marker = []
    before = signal.signal(signal.SIGTERM, lambda *a: marker.append("custom"))
    sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        trainer = Trainer(_cfg(tmp_path, steps=100, checkpoint_every=1000))
        original, calls = trainer.objective, {"n": 0}

        def signal_during_step_3(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return original(*args, **kwargs)

        trainer.objective = signal_during_step_3
        with pytest.raises(Interrupted) as err:
            trainer.run(100, progress=False)
        assert err.value.signum == signal.SIGTERM and err.value.step == 3
        assert isinstance(err.value, KeyboardInterrupt)  # Ctrl-C handlers still see it
        assert load_checkpoint(tmp_path)[1]["step"] == 3
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and not marker
        os.kill(os.getpid(), signal.SIGTERM)
        assert marker == ["custom"]
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGINT, sigint)


def test_mismatch_check_ignores_checkpoints_that_predate_it(tmp_path):
    """Checkpoints written before meta recorded the config still resume."""
    train(_cfg(tmp_path), progress=False)
    meta_path = next((tmp_path / "checkpoints").glob("step-*")) / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["train"]
    meta_path.write_text(json.dumps(meta))
    manifest = meta_path.parent / "manifest.json"
    digests = json.loads(manifest.read_text()) | {"meta.json": _sha256(meta_path)}
    manifest.write_text(json.dumps(digests))
    assert resume(tmp_path, steps=3, progress=False).step == 3
