"""Reflow (Liu et al. 2023, "Flow straight and fast", Algorithm 1): couple noise with the
samples a trained model's ODE maps it to, then train a flow-matching run on those pairs.

The pairs ``(x_0, x_1) = (ODE(z), z)``, ``z ~ N(0, I)``, travel to the trainer as its data: a
``PairedDataset`` whose ``x`` is ``[N, 2, *event]`` and whose ``event_shape`` is one sample's,
so the network is sized for samples; the objective is ``flow_matching`` with
``coupling="paired"``. The trainer itself is unchanged. The pairs are saved in the run folder
(``reflow_pairs.safetensors``, with ``reflow.json``), so ``resume_reflow`` continues a run.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from scorelab._utils import randn
from scorelab.data import Dataset, Normalization
from scorelab.diffusion.api import event_shape, sample
from scorelab.diffusion.processes import Process, make_process
from scorelab.outputs import claim
from scorelab.training.checkpoint import write_json_atomic
from scorelab.training.config import TrainConfig
from scorelab.training.trainer import Trainer, TrainResult, load_model, read_run_config

PAIRS_FILE = "reflow_pairs.safetensors"
RECORD_FILE = "reflow.json"
# deterministic samplers: the pairs must be a map z -> x_0 (an SDE sampler couples nothing)
ODE_SAMPLERS = ("euler", "heun", "rk45", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm")
INITS = ("auto", "teacher", "scratch")


@dataclass(frozen=True, eq=False)
class PairedDataset(Dataset):
    """Coupled pairs ``x`` ``[N, 2, *event]``: ``x[:, 0]`` a sample ``x_0``, ``x[:, 1]`` the noise
    ``x_1`` it was generated from; ``event_shape`` is one sample's."""

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[2:])


def _check_sampler(sampler: str) -> None:
    if sampler not in ODE_SAMPLERS:
        raise ValueError(
            f"sampler {sampler!r} is not deterministic, so it couples no noise with its sample; "
            f"choose one of {', '.join(ODE_SAMPLERS)}"
        )


def draw_pairs(
    model: object,
    n: int,
    *,
    sampler: str = "dpmpp_2m",
    nfe: int = 35,
    process: str | Process = "flow",
    shape: tuple[int, ...] | None = None,
    batch_size: int = 2000,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
) -> Tensor:
    """``n`` pairs ``[n, 2, *event]`` of (sample, noise): ``z ~ N(0, I)`` and the sample an ODE
    ``sampler`` reaches from the sigma-space start ``prior_std * z`` of ``process`` (for the
    flow, ``x_{t_max} ~ z``). Any deterministic map from ``z`` is a coupling (Liu et al. 2023)."""
    _check_sampler(sampler)
    if isinstance(process, str):
        process = make_process(process)  # an unknown name: ValueError listing PROCESSES
    shape = event_shape(model, shape)
    z = randn((n, *shape), generator, torch.float32)
    start = process.prior_std() * z  # sigma-space start; in flow coordinates ~ z
    res = sample(model, n, sampler=sampler, nfe=nfe, process=process, x_init=start,
                 batch_size=batch_size, generator=generator, progress=progress)  # fmt: skip
    return torch.stack([res.samples.to(z), z], 1)


def _student_config(teacher: dict, out: str, steps: int | None, seed: int | None,
                    time_sampling: str | None) -> TrainConfig:  # fmt: skip
    """The reflow run's config: the teacher's data, network and optimizer settings, the
    ``flow_matching`` objective on given pairs, and the teacher's parameterization if it was
    a flow-matching run (else ``velocity``), with the teacher's exact network arguments."""
    cfg = TrainConfig.from_dict(teacher["train"])
    if cfg.model != "score":
        raise ValueError(f"reflow needs a score or flow run; this run is a {cfg.model} baseline")
    if cfg.conditional:
        raise ValueError(
            "reflow of a conditional run is not supported: its pairs would need labels; "
            "reflow an unconditional run"
        )
    model_cfg = dict(teacher["model"])
    flow_teacher = cfg.objective == "flow_matching"
    times = ("time_sampling", "logit_mean", "logit_std")  # the teacher's, if it was a flow
    kwargs = {k: v for k, v in cfg.objective_kwargs.items() if flow_teacher and k in times}
    if time_sampling is not None:
        kwargs["time_sampling"] = time_sampling
    param = model_cfg["parameterization"] if flow_teacher else "velocity"
    net_kwargs = dict(model_cfg.get("net_kwargs", {}))
    if param == model_cfg["parameterization"]:  # the wrapper's own arguments (sigma_data)
        net_kwargs |= {k: v for k, v in model_cfg.items()
                       if k not in ("parameterization", "net", "net_kwargs")}  # fmt: skip
    return dataclasses.replace(
        cfg, objective="flow_matching", objective_kwargs={**kwargs, "coupling": "paired"},
        parameterization=param, net=model_cfg["net"], net_kwargs=net_kwargs, out=str(out),
        steps=cfg.steps if steps is None else steps, seed=cfg.seed if seed is None else seed,
    )  # fmt: skip


def _paired_data(pairs: Tensor, teacher: dict) -> PairedDataset:
    data = teacher["data"]
    return PairedDataset(
        x=pairs, labels=None, normalization=Normalization.from_dict(data["normalization"]),
        name=data["name"], num_classes=data.get("num_classes"),
        range_source=data.get("range_source"),
    )  # fmt: skip


def reflow(
    run_dir: str | Path,
    out: str | Path,
    *,
    pairs: int = 10_000,
    steps: int | None = None,
    sampler: str = "dpmpp_2m",
    nfe: int = 35,
    process: str = "flow",
    init: str = "auto",
    time_sampling: str | None = None,
    seed: int | None = None,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> TrainResult:
    """Rectify a trained run (Liu et al. 2023, Algorithm 1): draw ``pairs`` (sample, noise)
    pairs from its EMA model with the ODE ``sampler`` at ``nfe`` on ``process``, then train a
    new run in ``out`` by flow matching on them for ``steps`` (default: the teacher's).

    ``init``: "teacher" starts from the teacher's EMA weights (its parameterization must be the
    student's, i.e. a flow-matching teacher), "scratch" from a fresh network, "auto" the
    former where possible. ``time_sampling`` defaults to the teacher's. ``seed`` (default the
    teacher's) seeds the pairs and the training.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if not isinstance(pairs, int) or pairs < 2:
        raise ValueError(f"pairs must be an int >= 2 (noise-sample pairs to draw); got {pairs!r}")
    _check_sampler(sampler)
    teacher = read_run_config(run_dir)
    cfg = _student_config(teacher, str(out), steps, seed, time_sampling)
    same = cfg.parameterization == teacher["model"]["parameterization"]
    if init == "teacher" and not same:
        raise ValueError(
            f"init 'teacher' needs the teacher's parameterization to be the student's "
            f"({cfg.parameterization}); {run_dir} is a {teacher['model']['parameterization']!r} "
            f"run trained by {teacher['train']['objective']!r}: use init 'scratch'"
        )
    claim(out, overwrite, name="out folder", flag="overwrite=True",
          fix="choose another out or pass overwrite=True")  # fmt: skip
    model, _ = load_model(run_dir, device=device)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    with torch.no_grad():
        pair_tensor = draw_pairs(model, pairs, sampler=sampler, nfe=nfe, process=process,
                                 generator=gen, progress=progress)  # fmt: skip
    seconds = time.perf_counter() - start
    out = Path(out)
    save_file({"pairs": pair_tensor.contiguous()}, out / PAIRS_FILE)
    init_from = "teacher" if init == "teacher" or (init == "auto" and same) else "scratch"
    record = {"teacher": str(run_dir), "pairs": pairs, "sampler": sampler, "nfe": nfe,
              "process": process, "init": init_from, "pair_seconds": round(seconds, 2)}  # fmt: skip
    write_json_atomic(out / RECORD_FILE, record)
    trainer = Trainer(cfg, _paired_data(pair_tensor, teacher))
    try:
        if init_from == "teacher":
            trainer.model.load_state_dict(model.state_dict())
            trainer.ema.load_state_dict(model.state_dict())
        losses = trainer.run(cfg.steps, progress)
        return TrainResult(trainer.run_dir, trainer.step, losses, trainer.ema_model(), trainer.data)
    finally:
        trainer.close()


def is_reflow_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` was written by ``reflow`` (it holds ``reflow.json``)."""
    return (Path(run_dir) / RECORD_FILE).is_file()


def resume_reflow(
    run_dir: str | Path, steps: int | None = None, progress: bool | None = None
) -> TrainResult:
    """Continue a reflow run from its newest checkpoint on its saved pairs, up to ``steps``."""
    if not is_reflow_run(run_dir):
        raise ValueError(f"{run_dir} holds no {RECORD_FILE}: it is not a reflow run")
    record = read_run_config(run_dir)
    cfg = TrainConfig.from_dict({**record["train"], "out": str(run_dir)})
    if steps is not None:
        cfg.steps = steps
    pairs = load_file(str(Path(run_dir) / PAIRS_FILE))["pairs"]
    trainer = Trainer(cfg, _paired_data(pairs, record))
    try:
        trainer.restore()
        losses = trainer.run(cfg.steps, progress)
        return TrainResult(trainer.run_dir, trainer.step, losses, trainer.ema_model(), trainer.data)
    finally:
        trainer.close()
