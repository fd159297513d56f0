"""Reflow: (sample, noise) pairs from an ODE sampler, a paired data set the trainer sizes by one
sample, teacher initialization and resume from the saved pairs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from scorelab import diffusion
from scorelab.densities import GaussianMixture
from scorelab.training import TrainConfig, load_model, train
from scorelab.training.reflow import (
    PAIRS_FILE,
    RECORD_FILE,
    PairedDataset,
    draw_pairs,
    is_reflow_run,
    reflow,
    resume_reflow,
)

F64 = torch.float64


def test_pairs_are_the_ode_map_of_their_noise():
    """Each pair's sample is the Euler solution from that pair's noise at the flow prior, the
    noise is N(0, I) from the generator, and the layout is [n, 2, *event] = (x_0, x_1)."""
    gm = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], 0.1)
    pairs = draw_pairs(gm, 50, sampler="euler", nfe=8, generator=torch.Generator().manual_seed(0))
    assert pairs.shape == (50, 2, 2)
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pairs[:, 1], z)
    flow = diffusion.Flow()
    x0 = diffusion.euler(gm.denoise, flow.prior_std() * z.double(), flow.sigmas(8))
    torch.testing.assert_close(pairs[:, 0], x0.float(), rtol=1e-5, atol=1e-5)


def test_pairs_need_a_deterministic_sampler():
    gm = GaussianMixture([1.0], [[0.0, 0.0]], 1.0)
    with pytest.raises(ValueError, match=r"not deterministic.*dpmpp_2m"):
        draw_pairs(gm, 10, sampler="euler_maruyama")


def test_paired_dataset_reports_one_samples_shape():
    from scorelab.data import load

    data = load("moons", n=100, generator=torch.Generator().manual_seed(0))
    paired = PairedDataset(x=torch.zeros(7, 2, 2), labels=None,
                           normalization=data.normalization, name="moons")  # fmt: skip
    assert paired.event_shape == (2,) and len(paired) == 7


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("reflow") / "teacher"
    cfg = TrainConfig(data="moons", n=500, objective="flow_matching", parameterization="velocity",
                      steps=20, batch_size=64, checkpoint_every=20, log_every=10, device="cpu",
                      net_kwargs={"hidden": 32, "depth": 2}, out=str(out))  # fmt: skip
    train(cfg, progress=False)
    return out


def test_reflow_trains_from_the_teacher_and_resumes(teacher, tmp_path):
    out = tmp_path / "student"
    res = reflow(teacher, out, pairs=64, steps=3, nfe=4, progress=False)
    record = json.loads((out / "config.json").read_text())
    assert record["train"]["objective_kwargs"] == {"coupling": "paired"}
    assert record["train"]["parameterization"] == "velocity"
    assert record["data"]["event_shape"] == [2] and res.model.event_shape == (2,)
    assert is_reflow_run(out) and (out / PAIRS_FILE).is_file()
    assert json.loads((out / RECORD_FILE).read_text())["init"] == "teacher"
    # started from the teacher: the first loss is the teacher's paired loss on the trainer's
    # first minibatch (same seed, same draws: the batch indices, then the objective's times)
    model, _ = load_model(teacher)
    pairs = load_file(str(out / PAIRS_FILE))["pairs"]
    gen = torch.Generator().manual_seed(record["train"]["seed"])
    idx = torch.randint(len(pairs), (record["train"]["batch_size"],), generator=gen)
    first = diffusion.flow_matching_loss(model, pairs[idx], coupling="paired", generator=gen)
    assert res.losses[0] == pytest.approx(first.item(), rel=1e-5)
    more = resume_reflow(out, steps=5, progress=False)
    assert more.step == 5 and len(more.losses) == 2
    with torch.no_grad():  # the student samples; a 1-step Euler is its denoiser at sigma_max
        x = diffusion.sample(more.model, 16, sampler="euler", nfe=1, process="flow").samples
    assert x.shape == (16, 2) and torch.isfinite(x).all()


def test_reflow_refuses_bad_requests(teacher, tmp_path):
    with pytest.raises(ValueError, match="unknown init"):
        reflow(teacher, tmp_path / "a", init="warm")
    with pytest.raises(ValueError, match="pairs must be"):
        reflow(teacher, tmp_path / "b", pairs=1)
    with pytest.raises(ValueError, match="not deterministic"):
        reflow(teacher, tmp_path / "c", sampler="ddpm")
    assert not (tmp_path / "c").exists()  # refused before the out folder is claimed
    with pytest.raises(ValueError, match="not a reflow run"):
        resume_reflow(teacher)
    # the trainer's own resume of a reflow run meets the paired objective on unpaired data
    with pytest.raises(ValueError, match="coupling 'paired' needs x"):
        diffusion.flow_matching_loss(lambda x, s, c=None: x, torch.zeros(4, 2), coupling="paired")


def test_reflow_of_an_edm_run_starts_from_scratch(tmp_path):
    out = tmp_path / "edm"
    net = {"hidden": 16, "depth": 1}
    cfg = TrainConfig(data="moons", n=300, steps=5, batch_size=32, checkpoint_every=5,
                      device="cpu", net_kwargs=net, out=str(out))  # fmt: skip
    train(cfg, progress=False)
    with pytest.raises(ValueError, match="init 'teacher' needs"):
        reflow(out, tmp_path / "s", init="teacher", pairs=16, steps=1, nfe=2, progress=False)
    reflow(out, tmp_path / "s2", pairs=16, steps=1, nfe=2, progress=False)
    assert json.loads((tmp_path / "s2" / RECORD_FILE).read_text())["init"] == "scratch"
    record = json.loads((tmp_path / "s2" / "config.json").read_text())
    assert record["model"]["parameterization"] == "velocity"
    assert record["model"]["net_kwargs"]["hidden"] == 16
