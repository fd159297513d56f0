"""Model families plug into the trainer through ``scorelab.families``; the trainer imports none."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import scorelab.training.trainer as trainer_module
from scorelab import families
from scorelab.data import Dataset, Normalization
from scorelab.diffusion import SampleResult
from scorelab.training import TrainConfig, Trainer, build_model, train
from scorelab.training.trainer import load_model, lr_at


class Shift(nn.Module):
    """A toy family's model: ``x = mu + n``, fitted by least squares to the data."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.mu = nn.Parameter(torch.zeros(dim))

    def config(self) -> dict:
        return {"dim": self.dim}


def _sample(model: Shift, n: int, *, generator=None, **options) -> SampleResult:
    x = model.mu.detach() + torch.randn(n, model.dim, generator=generator)
    return SampleResult(samples=x, nfe=0, sigmas=torch.empty(0), sampler="shift", wall_time=0.0)


TOY = families.ModelFamily(
    name="test-shift",
    build=lambda cfg, data: Shift(math.prod(data.event_shape), seed=cfg.seed),
    objective=lambda cfg, data: lambda model, x, generator, cond=None: ((x - model.mu) ** 2).mean(),
    from_config=lambda config: Shift(**config),
    sample=_sample,
)


def test_a_registered_family_trains_saves_and_reloads_without_touching_the_trainer(tmp_path):
    families.register(TOY, replace=True)
    mean = torch.tensor([2.0, -1.0])
    x = mean + torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    data = Dataset(x, None, Normalization.identity(), "shifted")
    cfg = TrainConfig(model="test-shift", steps=200, batch_size=128, lr=0.05, warmup_steps=1,
                      ema_decay=0.9, out=str(tmp_path), checkpoint_every=200)  # fmt: skip
    trainer = Trainer(cfg, data=data)
    assert isinstance(trainer.model, Shift)
    trainer.run(cfg.steps, progress=False)
    # the family's loss moved mu from 0 most of the way to the data mean (2.2 away)
    assert (trainer.ema_model().mu - mean).norm() < 0.5 * mean.norm()
    # the run folder rebuilds through the family's from_config, with the EMA weights
    loaded, record = load_model(tmp_path)
    assert record["train"]["model"] == "test-shift"
    torch.testing.assert_close(loaded.mu, trainer.ema.state_dict()["mu"], rtol=0, atol=0)
    drawn = families.get("test-shift").sample(loaded, 5, generator=torch.Generator())
    assert drawn.samples.shape == (5, 2)


def test_unknown_model_names_every_family():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; choose one of score, vae, gan"):
        families.get("nope")


def test_a_taken_name_needs_replace():
    families.register(TOY, replace=True)
    other = families.ModelFamily("test-shift", TOY.build, TOY.objective, Shift, _sample)
    with pytest.raises(ValueError, match="already registered; pass replace=True"):
        families.register(other)
    assert families.register(TOY) is TOY  # the same record again is fine


def test_baselines_come_through_the_registry(tmp_path):
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    data = Dataset(x, None, Normalization.identity(), "gauss")
    model = build_model(TrainConfig(model="dae", out=str(tmp_path)), data)
    assert model.kind == "dae"
    with pytest.raises(ValueError, match="objective 'ncsn' trains score models"):
        Trainer(TrainConfig(model="vae", objective="ncsn", out=str(tmp_path)), data=data)


def test_the_trainer_imports_no_family():
    """No ``scorelab.baselines`` (nor the score family) among the trainer's imports, and
    importing ``scorelab.training`` loads neither (checked in a fresh interpreter)."""
    tree = ast.parse(Path(trainer_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module}.{a.name}" for a in node.names} | {node.module or ""}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert not {m for m in imported if "baselines" in m or "score_family" in m}, imported
    code = (
        "import sys, scorelab.training; "
        "print(sorted(m for m in sys.modules if 'baselines' in m or 'score_family' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr)


@pytest.mark.parametrize("schedule", ["constant", "cosine", "linear"])
def test_lr_schedules(schedule):
    lr, warm, steps = 2e-3, 10, 100
    got = [lr_at(s, lr, warm, steps, schedule) for s in range(steps)]
    assert got[0] == pytest.approx(lr / warm)  # warm-up: (step + 1) / warmup_steps
    t = 50 / steps  # past warm-up, halfway: the schedule's own factor
    factor = {"constant": 1.0, "cosine": 0.5 * (1 + math.cos(math.pi * t)), "linear": 1 - t}
    assert got[50] == pytest.approx(lr * factor[schedule])
    if schedule != "constant":  # decays to 0 at `steps`: the last step is within 1/steps of it
        assert got[-1] <= lr * (math.pi / steps) and got[-1] > 0
        assert all(a >= b for a, b in zip(got[warm:], got[warm + 1 :], strict=False))


def test_bad_lr_schedule_is_named():
    with pytest.raises(ValueError, match="'lr_schedule' must be one of constant, cosine, linear"):
        TrainConfig(lr_schedule="step")


def test_trainer_uses_the_schedule(tmp_path):
    x = torch.randn(512, 2, generator=torch.Generator().manual_seed(0))
    data = Dataset(x, None, Normalization.identity(), "gauss")
    net = {"hidden": 16, "depth": 1, "emb_dim": 8}
    cfg = TrainConfig(steps=20, warmup_steps=5, lr_schedule="cosine", batch_size=32,
                      out=str(tmp_path), net_kwargs=net)  # fmt: skip
    tr = Trainer(cfg, data=data)
    for _ in range(12):
        tr.train_step()
    assert tr.opt.param_groups[0]["lr"] == pytest.approx(lr_at(11, cfg.lr, 5, 20, "cosine"))
    res = train(cfg, progress=False, overwrite=True)
    assert res.step == 20
