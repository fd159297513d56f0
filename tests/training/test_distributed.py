"""Data-parallel training and sampling on torch.distributed: two gloo ranks on the CPU give the
parameters of one process, checkpoints resume at another world size, and the per-example
random draws of every objective shard exactly.

Tolerance of the 2-rank vs 1-process comparison: both runs draw the same global minibatch,
noise levels and noise (the generator states end bit-identical, which is checked), so the only
difference is the order of float32 sums: one mean over 64 examples against the average of two
means over 32 (the loss and DDP's gradient all-reduce). That is a few float32 ulps (~1e-7
relative) per step, which Adam carries into the weights at the scale of lr * 1e-7; after 8
steps the weights of this run differ by at most ~1e-7 (measured 6e-8), so atol 1e-6 with rtol
1e-5 leaves an order of magnitude of headroom while any wrong slice, noise or gradient scale
(changes of 1e-4 or more after one step) fails.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scorelab.diffusion.objectives import OBJECTIVES
from scorelab.nets import build
from scorelab.training import TrainConfig, Trainer, distributed, read_run_config, resume
from scorelab.training.checkpoint import load_checkpoint

STEPS = 8
CONFIG = """\
data = "moons"
n = 400
batch_size = 64
steps = 8
checkpoint_every = 4
log_every = 4
warmup_steps = 4
seed = 3
device = "cpu"
[net_kwargs]
hidden = 32
depth = 2
emb_dim = 16
"""
TOL = {"rtol": 1e-5, "atol": 1e-6}


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m scorelab ARGS`` with one thread per rank."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "scorelab", *args]  # fmt: skip
    # its own process group: torchrun's workers die with it if the test fails or times out
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return done


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[Path, str]:
    """A run trained by two gloo ranks through the CLI, and its printed output."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "run.toml").write_text(CONFIG)
    done = _torchrun(["train", "--config", "run.toml", "--out", "two"], root)
    return root / "two", done.stdout


def _single(run: Path, out: Path) -> Trainer:
    """A one-process trainer with the configuration of ``run``."""
    record = read_run_config(run)
    return Trainer(TrainConfig.from_dict({**record["train"], "out": str(out)}))


def _assert_same_weights(trainer: Trainer, run: Path) -> None:
    tensors, _, _ = load_checkpoint(run)
    for group, state in (("model", trainer.model.state_dict()), ("ema", trainer.ema.state_dict())):
        for k, v in state.items():
            torch.testing.assert_close(tensors[group][k], v, **TOL, msg=f"{group}.{k}")


def test_two_ranks_give_the_parameters_of_one_process(two_ranks, tmp_path):
    run, stdout = two_ranks
    single = _single(run, tmp_path / "one")
    losses = single.run(STEPS, progress=False)
    _assert_same_weights(single, run)
    tensors, meta, _ = load_checkpoint(run)
    assert meta["step"] == STEPS and meta["world_size"] == 2
    # the same draws: the training generators end in the same state
    assert torch.equal(tensors["rng"]["generator"], single.generator.get_state())
    with (run / "log.csv").open() as f:
        logged = [float(r["loss"]) for r in csv.DictReader(f)]
    windows = [sum(losses[i : i + 4]) / 4 for i in range(0, STEPS, 4)]
    np.testing.assert_allclose(logged, windows, rtol=1e-5)
    assert stdout.count("trained ") == 1  # rank 0 reports, once


def test_a_two_rank_checkpoint_resumes_at_world_size_one(two_ranks, tmp_path):
    run = tmp_path / "two"
    shutil.copytree(two_ranks[0], run)
    res = resume(run, steps=STEPS + 4, progress=False)
    assert res.step == STEPS + 4
    single = _single(run, tmp_path / "one")
    single.run(STEPS + 4, progress=False)
    _assert_same_weights(single, run)


def test_sampling_under_torchrun_merges_every_rank_share(two_ranks, tmp_path):
    out = tmp_path / "s" / "samples.npz"
    done = _torchrun(["sample", str(two_ranks[0]), "-n", "11", "--nfe", "4", "--out", str(out)],
                     tmp_path)  # fmt: skip
    assert done.stdout.count("11 samples") == 1
    with np.load(out) as f:
        samples, record = f["samples"], str(f["record"])
    assert samples.shape == (11, 2) and np.isfinite(samples).all()
    assert len(np.unique(samples, axis=0)) == 11  # independent streams per rank
    assert '"ranks": 2' in record
    assert sorted(p.name for p in out.parent.iterdir()) == ["samples.npz", "samples.png"]


# -- in-process checks of the pieces ------------------------------------------------------------
@pytest.mark.parametrize("name", ["edm", "ddpm", "ncsn", "dsm", "ssm"])
def test_per_example_draws_make_two_half_batches_equal_one_batch(name):
    """Rank r of 2, drawing through ``PerExampleDraws``, gets the loss gradient of its half of
    the global batch exactly: the mean of both ranks' gradients is the 1-process gradient
    (float64, so the tolerance is rounding only)."""
    torch.manual_seed(0)
    model = build("mlp", "edm", dim=2, hidden=16, depth=2, emb_dim=8, seed=0).double()
    x = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    kwargs = {"ncsn": {"sigmas": torch.tensor([1.0, 0.5, 0.1])}, "dsm": {"sigma": 0.3},
              "ssm": {"sigma": 0.3, "n_projections": 2}}.get(name, {})  # fmt: skip
    objective = OBJECTIVES[name]

    def grads(loss: torch.Tensor) -> torch.Tensor:
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    g = torch.Generator().manual_seed(5)
    whole = grads(objective(model, x, generator=g, **kwargs))
    parts, states = [], []
    for rank in range(2):
        gen = torch.Generator().manual_seed(5)
        draws = distributed.PerExampleDraws(gen, 4, rank, 2)
        with draws:
            view = distributed.ModelView(model, distributed.ForwardMethods(model), draws)
            loss = objective(view, distributed.shard(x, rank, 2), generator=gen, **kwargs)
        parts.append(grads(loss))
        states.append(gen.get_state())
    torch.testing.assert_close((parts[0] + parts[1]) / 2, whole, rtol=1e-12, atol=1e-12)
    assert all(torch.equal(s, g.get_state()) for s in states)


def test_draw_functions_are_sliced_or_refused():
    """Each supported draw of a local batch of 2 on rank r of 3 is rows 2r, 2r+1 of the draw of
    the global batch of 6; a draw not shaped by the batch is the same on every rank."""

    def every_kind(gen: torch.Generator, b: int) -> list[torch.Tensor]:
        return [torch.randn((b, 3), generator=gen), torch.rand(b, generator=gen),
                torch.randint(10, (b, 2), generator=gen), torch.randint(2, 9, (b,), generator=gen),
                torch.empty(b, 2).normal_(generator=gen), torch.empty(b).uniform_(generator=gen),
                torch.randn(5, generator=gen)]  # fmt: skip

    whole = every_kind(torch.Generator().manual_seed(0), 6)
    for rank in range(3):
        gen = torch.Generator().manual_seed(0)
        with distributed.PerExampleDraws(gen, 2, rank, 3):
            got = every_kind(gen, 2)
        for a, b in zip(got[:-1], whole[:-1], strict=True):
            assert torch.equal(a, b[2 * rank : 2 * rank + 2])
        assert torch.equal(got[-1], whole[-1])  # not per-example: the same on every rank
    gen = torch.Generator().manual_seed(0)
    with distributed.PerExampleDraws(gen, 2, 0, 3), pytest.raises(ValueError, match="multinomial"):
        torch.multinomial(torch.ones(2, 4), 1, generator=gen)


def test_batch_not_divisible_by_world_size_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = TrainConfig(data="moons", n=100, batch_size=63, device="cpu", out=str(tmp_path))
    with pytest.raises(ValueError, match=r"batch_size 63 .* over 2 processes: .*divisible by 2"):
        Trainer(cfg)


def test_world_size_without_torchrun_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="start the processes with torchrun"):
        distributed.init(torch.device("cpu"))


def test_one_process_is_rank_zero_of_one():
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert not distributed.init(torch.device("cpu"))  # nothing to join
    assert distributed.sample_share(10, 7) == (10, 7)
    assert [distributed.share(11, r, 2) for r in range(2)] == [(0, 6), (6, 5)]
    seeds = {distributed.rank_seed(s, r) for s in range(3) for r in range(3)}
    assert len(seeds) == 9 and distributed.rank_seed(1, 2) == distributed.rank_seed(1, 2)


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_every_rank_at_one_step_with_a_checkpoint(tmp_path):
    """A scheduler's SIGTERM reaches torchrun, which passes it to the ranks: they agree on the
    step to stop at (no rank waits in a collective for another), save one checkpoint, and the
    run resumes at world size one."""
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "scorelab", "train", "--data", "moons", "--num-examples", "400",
           "--steps", "100000", "--batch-size", "32", "--checkpoint-every", "100000",
           "--out", str(run)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 180
        while not (run / "log.csv").exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    _, meta, skipped = load_checkpoint(run)
    assert meta["world_size"] == 2 and meta["step"] >= 1 and not skipped, err[-3000:]
    assert f"stopped by SIGTERM at step {meta['step']}" in out
    assert resume(run, steps=meta["step"] + 2, progress=False).step == meta["step"] + 2
