"""The training loop: AdamW, warm-up, clipping, EMA, CSV log, atomic checkpoints, exact resume."""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

import scorelab
from scorelab.data import Dataset, load
from scorelab.diffusion.objectives import OBJECTIVES, default_sigmas
from scorelab.errors import DivergenceError
from scorelab.nets import Denoiser, build, from_config
from scorelab.training.checkpoint import (
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
    write_json_atomic,
)
from scorelab.training.config import TrainConfig
from scorelab.training.ema import EMA

LOG_FIELDS = ["step", "loss", "lr", "grad_norm", "examples_per_s", "elapsed_s"]


def _tensorboard(run_dir: Path):
    """A TensorBoard writer into ``run_dir/tensorboard`` when tensorboard is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: the CSV log is always written
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def pick_device(name: str) -> torch.device:
    """``"auto"``: CUDA if present, else Apple MPS, else CPU; otherwise the named device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device {name!r} is not a torch device (use auto, cpu, cuda)") from err


def build_model(cfg: TrainConfig, data: Dataset) -> Denoiser:
    """The network and parameterization of ``cfg``, sized for ``data``."""
    kwargs = dict(cfg.net_kwargs)
    if cfg.conditional:
        if data.labels is None:
            raise ValueError(
                f"conditional training needs labelled data; {data.name} has no labels (use a "
                "labelled set such as digits, or an image folder with one sub-folder per class)"
            )
        kwargs.setdefault("num_classes", data.num_classes)
    if cfg.net == "mlp":
        kwargs.setdefault("dim", math.prod(data.event_shape))
    elif cfg.net == "unet":
        if len(data.event_shape) != 3:
            raise ValueError(
                f"net 'unet' needs images [C, H, W]; {data.name} has examples of shape "
                f"{data.event_shape}: use net 'mlp'"
            )
        kwargs.setdefault("in_channels", data.event_shape[0])
    if cfg.parameterization in ("edm", "energy"):
        kwargs.setdefault("sigma_data", round(float(data.x.std()), 4))
    kwargs.setdefault("seed", cfg.seed)
    return build(cfg.net, cfg.parameterization, **kwargs)


def build_objective(cfg: TrainConfig, data: Dataset):
    """``loss(model, x, generator, cond)`` for ``cfg.objective`` with data-driven defaults."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(
            f"unknown objective {cfg.objective!r}; choose one of {', '.join(OBJECTIVES)}"
        )
    if cfg.objective == "esm":
        raise ValueError(
            "objective 'esm' needs the true score, which data alone does not give; use it from "
            "the API (scorelab.diffusion.esm_loss) with a known density"
        )
    kwargs = dict(cfg.objective_kwargs)
    if cfg.objective == "ncsn" and "sigmas" not in kwargs:
        kwargs["sigmas"] = default_sigmas(data.x)
    if cfg.objective == "edm":
        kwargs.setdefault("sigma_data", round(float(data.x.std()), 4))
    fn = OBJECTIVES[cfg.objective]

    def objective(model, x, generator, cond=None):
        return fn(model, x, generator=generator, cond=cond, **kwargs)

    return objective


@dataclass
class TrainResult:
    """What a run produced."""

    run_dir: Path
    step: int  # optimizer steps done
    losses: list[float]  # the loss of every step of this session
    model: Denoiser  # with the EMA weights loaded
    data: Dataset


class Trainer:
    """Owns the model, optimizer, EMA and random state of one run folder."""

    def __init__(self, cfg: TrainConfig, data: Dataset | None = None):
        self.cfg = cfg
        self.run_dir = Path(cfg.out)
        self.device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)  # dropout and other global-RNG users
        if data is None:
            data = load(cfg.data, n=cfg.n, generator=self._gen(), **cfg.data_kwargs)
        self.data = data
        self.model = build_model(cfg, self.data).to(self.device)
        self.objective = build_objective(cfg, self.data)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.ema = EMA(self.model, cfg.ema_decay)
        self.generator = self._gen(self.device)
        self.step = 0
        self.x = self.data.x.to(self.device)
        conditional = self.data.labels is not None and self.model.num_classes is not None
        self.labels = self.data.labels.to(self.device) if conditional else None

    def _gen(self, device: torch.device | str = "cpu") -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.cfg.seed)

    # -- persistence ------------------------------------------------------------------------
    def describe(self) -> dict:
        """The run record: configuration, model, data normalization and versions."""
        return {
            "train": self.cfg.to_dict(),
            "model": self.model.config(),
            "data": {
                "name": self.data.name,
                "event_shape": list(self.data.event_shape),
                "num_classes": self.data.num_classes,
                "normalization": self.data.normalization.to_dict(),
            },
            "versions": {
                "scorelab": scorelab.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
        }

    def save(self) -> Path:
        opt_tensors, opt_meta = optimizer_to_tensors(self.opt)
        rng = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        return save_checkpoint(
            self.run_dir,
            self.step,
            {
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict(),
                "optimizer": opt_tensors,
                "rng": rng,
            },
            {"optimizer": opt_meta},
        )

    def restore(self) -> list[str]:
        """Load the newest intact checkpoint; returns the damaged ones it skipped."""
        tensors, meta, skipped = load_checkpoint(self.run_dir)
        self.model.load_state_dict(tensors["model"])
        self.ema.load_state_dict(tensors["ema"])
        optimizer_from_tensors(self.opt, tensors["optimizer"], meta["optimizer"])
        self.generator.set_state(tensors["rng"]["generator"])
        torch.set_rng_state(tensors["rng"]["torch"])
        self.step = int(meta["step"])
        return skipped

    # -- the loop ---------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Linear warm-up to ``lr`` over ``warmup_steps``, then constant."""
        return self.cfg.lr * min(1.0, (step + 1) / max(1, self.cfg.warmup_steps))

    def drop_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Replace a ``label_dropout`` share of labels by the "no label" token (index
        ``num_classes``), so one network learns both ``p(x | u)`` and ``p(x)`` (Ho & Salimans
        2022, Algorithm 1)."""
        if self.cfg.label_dropout == 0:
            return labels
        drop = torch.rand(labels.shape, generator=self.generator, device=labels.device)
        return torch.where(drop < self.cfg.label_dropout, self.model.num_classes, labels)

    def train_step(self) -> tuple[float, float]:
        """One optimizer step on a minibatch drawn with replacement; returns (loss, grad norm)."""
        cfg = self.cfg
        idx = torch.randint(len(self.x), (cfg.batch_size,), generator=self.generator,
                            device=self.device)  # fmt: skip
        cond = None if self.labels is None else self.drop_labels(self.labels[idx])
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.opt.zero_grad(set_to_none=True)
        loss = self.objective(self.model, self.x[idx], self.generator, cond)
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"the loss became {loss.item()} at step {self.step} "
                f"(lr {self.lr_at(self.step):.3g}); the last good checkpoint is in "
                f"{self.run_dir / 'checkpoints'}. Lower the learning rate (--lr), keep gradient "
                "clipping on, or check the data"
            )
        loss.backward()
        clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.opt.step()
        self.step += 1
        self.ema.update(self.model, self.step)
        return loss.item(), float(norm)

    def run(self, until: int, progress: bool | None = None) -> list[float]:
        """Train until ``self.step == until``, logging and checkpointing as configured."""
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.run_dir / "config.json", self.describe())
        log_path = self.run_dir / "log.csv"
        new_log = not log_path.exists() or self.step == 0
        losses: list[float] = []
        window: list[float] = []
        start = last = time.perf_counter()
        board = _tensorboard(self.run_dir)
        with log_path.open("w" if new_log else "a", newline="") as f, tqdm(
            total=until, initial=self.step, desc="train", unit="step",
            disable=None if progress is None else not progress,
        ) as bar:  # fmt: skip
            writer = csv.writer(f)
            if new_log:
                writer.writerow(LOG_FIELDS)
            while self.step < until:
                try:
                    loss, norm = self.train_step()
                except KeyboardInterrupt:  # Ctrl-C: keep the work done so far, then stop
                    self.save()
                    raise
                losses.append(loss)
                window.append(loss)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == until:
                    now = time.perf_counter()
                    rate = len(window) * cfg.batch_size / max(now - last, 1e-9)
                    mean = sum(window) / len(window)
                    lr = self.lr_at(self.step - 1)
                    row = [self.step, f"{mean:.6g}", f"{lr:.6g}", f"{norm:.4g}", f"{rate:.1f}"]
                    writer.writerow([*row, f"{now - start:.2f}"])
                    f.flush()
                    if board is not None:
                        board.add_scalar("loss", mean, self.step)
                        board.add_scalar("examples_per_s", rate, self.step)
                    bar.set_postfix(loss=f"{mean:.4f}", ex_per_s=f"{rate:.0f}")
                    window, last = [], now
                if self.step % cfg.checkpoint_every == 0 or self.step == until:
                    self.save()
        if board is not None:
            board.close()
        return losses

    def ema_model(self) -> Denoiser:
        """A copy of the model holding the EMA weights, in eval mode."""
        model = from_config(self.model.config()).to(self.device)
        model.load_state_dict(self.ema.state_dict())
        model.event_shape = self.data.event_shape  # what one sample looks like, for sampling
        return model.eval()


def train(cfg: TrainConfig, progress: bool | None = None) -> TrainResult:
    """Train from scratch as ``cfg`` says; the run folder gets config, log and checkpoints."""
    trainer = Trainer(cfg)
    losses = trainer.run(cfg.steps, progress)
    return TrainResult(trainer.run_dir, trainer.step, losses, trainer.ema_model(), trainer.data)


def read_run_config(run_dir: str | Path) -> dict:
    """The ``config.json`` of a run folder, with a clear error if it is missing or malformed."""
    path = Path(run_dir) / "config.json"
    try:
        record = json.loads(path.read_text())
        TrainConfig.from_dict(record["train"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a scorelab run config ({err})") from err
    return record


def resume(run_dir: str | Path, steps: int | None = None, progress: bool | None = None):
    """Continue a run from its newest intact checkpoint up to ``steps`` total (default: the
    configured number). Continues the same loss curve as an uninterrupted run."""
    record = read_run_config(run_dir)
    cfg = TrainConfig.from_dict({**record["train"], "out": str(run_dir)})
    if steps is not None:
        cfg.steps = steps
    trainer = Trainer(cfg)
    skipped = trainer.restore()
    for line in skipped:
        print(f"warning: skipped damaged checkpoint {line}")
    losses = trainer.run(cfg.steps, progress)
    return TrainResult(trainer.run_dir, trainer.step, losses, trainer.ema_model(), trainer.data)


def load_model(run_dir: str | Path, ema: bool = True, device: str = "cpu") -> tuple[Denoiser, dict]:
    """The trained model of a run (EMA weights by default) and its run record."""
    record = read_run_config(run_dir)
    tensors, _, skipped = load_checkpoint(Path(run_dir))
    for line in skipped:
        print(f"warning: skipped damaged checkpoint {line}")
    model = from_config(record["model"])
    model.load_state_dict(tensors["ema" if ema else "model"])
    model.event_shape = tuple(record["data"]["event_shape"])
    return model.to(device).eval(), record
