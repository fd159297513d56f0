"""The training loop: AdamW, warm-up, clipping, EMA, CSV log, atomic checkpoints, exact resume."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import platform
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

import scorelab
from scorelab import families
from scorelab._utils import device_problem
from scorelab.data import Dataset, load
from scorelab.errors import DivergenceError, Interrupted
from scorelab.nets import Denoiser
from scorelab.outputs import claim
from scorelab.progress import progress as progress_counter
from scorelab.training import distributed
from scorelab.training.checkpoint import (
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
    write_json_atomic,
)
from scorelab.training.config import LR_SCHEDULES, TrainConfig
from scorelab.training.ema import EMA

LOG_FIELDS = ["step", "loss", "lr", "grad_norm", "examples_per_s", "elapsed_s"]
# Ctrl-C, a scheduler's stop (Slurm, Kubernetes) and Slurm's early warning (--signal=USR1)
STOP_SIGNALS = tuple(
    getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, n)
)
# config keys that say where and how long a run goes, not which run it is
RESUMABLE_KEYS = ("steps", "out", "device", "compile", "checkpoint_every", "log_every")


class _StopSignals:
    """While open, SIGINT, SIGTERM and SIGUSR1 only record their number (``signum``), so the
    loop can finish its step, checkpoint and stop; a second SIGINT interrupts the step itself.
    Installed explicitly (an inherited SIG_IGN does not matter) in the main thread; the
    previous handlers come back on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop inside the step
        self.signum = signum

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def check_same_run(meta: dict, train: dict, checkpoint: Path) -> None:
    """Raise if ``checkpoint`` (its ``meta``) was written under another training config than
    ``train`` (the run's ``config.json``): the folder then mixes two runs."""
    saved = meta.get("train")
    if saved is None:  # written before checkpoints recorded their config
        return
    now = json.loads(json.dumps(train, default=str))
    keys = sorted(k for k in saved.keys() | now.keys()
                  if k not in RESUMABLE_KEYS and saved.get(k) != now.get(k))  # fmt: skip
    if keys:
        diff = "; ".join(f"{k} {saved.get(k)!r} there, {now.get(k)!r} in config.json" for k in keys)
        raise ValueError(
            f"checkpoint {checkpoint} belongs to another run than {checkpoint.parent.parent}/"
            f"config.json ({diff}): the folder mixes two runs; train again into an empty folder"
        )


def _tensorboard(run_dir: Path):
    """A TensorBoard writer into ``run_dir/tensorboard`` when tensorboard is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: the CSV log is always written
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (``None`` for fp32), or a clear error
    where this torch build cannot autocast to it there."""
    if precision == "fp32":
        return None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    available = getattr(torch.amp, "is_autocast_available", None)  # torch >= 2.4
    if available is not None and not available(device.type):
        raise ValueError(
            f"precision {precision!r}: torch {torch.__version__} has no autocast on "
            f"{device.type}; use precision 'fp32' or another device"
        )
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision 'bf16': {torch.cuda.get_device_name(device)} has no bfloat16 support; "
            "use precision 'fp16' (with loss scaling) or 'fp32'"
        )
    with warnings.catch_warnings():  # older builds warn and disable autocast instead
        warnings.simplefilter("ignore")
        with torch.autocast(device.type, dtype=dtype):
            try:
                enabled = torch.is_autocast_enabled(device.type)
            except TypeError:  # torch < 2.4 has no device argument here
                enabled = torch.is_autocast_cpu_enabled() if device.type == "cpu" else True
    if not enabled:
        instead = "'bf16' or 'fp32'" if precision == "fp16" else "'fp32'"
        raise ValueError(
            f"precision {precision!r}: torch {torch.__version__} cannot autocast to {dtype} on "
            f"{device.type}; use precision {instead}"
        )
    return dtype


def _grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """fp16 loss scaling on ``device``, or a clear error where torch has none there."""
    try:
        return torch.amp.GradScaler(device.type)
    except (AttributeError, RuntimeError, ValueError) as err:  # torch.amp.GradScaler: >= 2.3
        raise ValueError(
            f"precision 'fp16' needs loss scaling, which torch {torch.__version__} does not "
            f"offer on {device.type} ({err}); use precision 'bf16' or 'fp32'"
        ) from err


def _update_phases(model: torch.nn.Module) -> list[dict]:
    """The model's update phases: ``model.update_phases()`` (a list of optimizer param-group
    dicts with ``params``, ``repeats`` and optionally ``betas``) or, by default, one phase of
    every parameter, once per step."""
    phases = model.update_phases() if hasattr(model, "update_phases") else None
    if not phases:
        return [{"params": list(model.parameters()), "repeats": 1}]
    for ph in phases:
        if not ph.get("params") or int(ph.get("repeats", 0)) < 1:
            raise ValueError(f"update phase {ph.get('name', '?')!r} needs params and repeats >= 1")
    return phases


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


def run_device(
    record: dict, device: str | torch.device | None = None
) -> tuple[torch.device, str | None]:
    """Where to run a trained model: ``device`` if given (an error if this machine lacks it),
    else the device the run was trained on, falling back to the CPU with a note (returned as
    the second item, else ``None``) when this machine lacks that device."""
    if device is not None:
        dev = pick_device(device)
        problem = device_problem(dev)
        if problem is not None:
            raise ValueError(f"device {device!r} is not available: {problem}; use device='cpu'")
        return dev, None
    recorded = record.get("device") or record.get("train", {}).get("device", "cpu")
    try:
        dev = pick_device(recorded)
    except ValueError:
        return torch.device("cpu"), f"the run's device {recorded!r} is unknown here; using cpu"
    problem = device_problem(dev)
    if problem is None:
        return dev, None
    return torch.device("cpu"), f"this run was trained on {recorded}, but {problem}; using cpu"


def build_model(cfg: TrainConfig, data: Dataset) -> torch.nn.Module:
    """The model of ``cfg``, sized for ``data``, built by the family ``cfg.model`` names
    (``scorelab.families``: "score" is a denoiser of ``scorelab.nets``; "vae", "gan", "dae"
    the baselines, whose arguments come in ``net_kwargs``)."""
    return families.get(cfg.model).build(cfg, data)


def build_objective(cfg: TrainConfig, data: Dataset):
    """``loss(model, x, generator, cond)`` of the family ``cfg.model`` names: for score models
    ``cfg.objective`` with data-driven defaults; a baseline trains by its own loss."""
    return families.get(cfg.model).objective(cfg, data)


def lr_at(step: int, lr: float, warmup_steps: int, steps: int, schedule: str) -> float:
    """The learning rate of optimizer step ``step`` (from 0): ``lr`` times the linear warm-up
    ``min(1, (step + 1) / warmup_steps)`` times the decay factor of ``schedule`` at
    ``step / steps``: 1 ("constant"), ``(1 + cos(pi t)) / 2`` ("cosine", Loshchilov & Hutter
    2017, SGDR without restarts) or ``1 - t`` ("linear"). A decay ends at 0 at ``steps``, so
    resuming a run with more ``steps`` stretches the rest of its schedule."""
    factor = min(1.0, (step + 1) / max(1, warmup_steps))
    t = min(step, steps) / steps
    if schedule == "cosine":
        factor *= 0.5 * (1.0 + math.cos(math.pi * t))
    elif schedule == "linear":
        factor *= 1.0 - t
    elif schedule != "constant":
        raise ValueError(
            f"unknown lr_schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}"
        )
    return lr * factor


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
        # under torchrun: one rank of a data-parallel group (scorelab.training.distributed)
        self.world_size = distributed.env_world_size()
        self.local_batch = distributed.split_batch(cfg.batch_size, self.world_size)
        self.device = distributed.local_device(pick_device(cfg.device))
        self.amp_dtype = autocast_dtype(cfg.precision, self.device)
        self._owns_group = distributed.init(self.device)
        self.rank = distributed.rank()
        torch.manual_seed(cfg.seed)  # dropout and other global-RNG users
        if data is None:
            data = load(cfg.data, n=cfg.n, generator=self._gen(), **cfg.data_kwargs)
        self.data = data
        self.model = build_model(cfg, self.data).to(self.device)
        self.objective = build_objective(cfg, self.data)
        self.phases = _update_phases(self.model)
        self.opt = torch.optim.AdamW(
            [{k: v for k, v in ph.items() if k != "repeats"} for ph in self.phases],
            lr=cfg.lr, weight_decay=cfg.weight_decay,
        )  # fmt: skip
        self.ema = EMA(self.model, cfg.ema_decay)
        self.generator = self._gen(self.device)
        self.step = 0
        self.x = self.data.x.to(self.device)
        conditional = self.data.labels is not None and self.model.num_classes is not None
        self.labels = self.data.labels.to(self.device) if conditional else None
        self.scaler = _grad_scaler(self.device) if cfg.precision == "fp16" else None
        self.draws = (
            distributed.PerExampleDraws(
                self.generator, self.local_batch, self.rank, self.world_size
            )
            if self.world_size > 1
            else None
        )
        self.train_model = self._training_model()
        self._seed_rank()

    def _training_model(self):
        """What the objective calls: ``self.model`` itself in one eager process; otherwise a
        ``ModelView`` of it wrapped in DistributedDataParallel (several ranks) and/or
        ``torch.compile``. ``self.model`` stays the plain module that owns the weights, so
        state-dict keys (no ``module.`` or ``_orig_mod.`` prefix), EMA and checkpoints are the
        same in every mode."""
        if self.world_size == 1 and not self.cfg.compile:
            return self.model
        module = distributed.ForwardMethods(self.model)
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # buffers are constants (Fourier frequencies) unless a layer keeps running statistics
            running = any(getattr(m, "track_running_stats", False) for m in self.model.modules())
            module = DistributedDataParallel(
                module,
                device_ids=ids,
                find_unused_parameters=self._unused_parameters(),
                **distributed.ddp_options(sync_buffers=running),
            )
        if self.cfg.compile:
            module = torch.compile(module)
        return distributed.ModelView(self.model, module, self.draws)

    def _unused_parameters(self) -> bool:
        """Whether the loss leaves some parameters without a gradient (the energy
        parameterization's output bias, say), which DDP must then look for at every step.
        Found by one throwaway forward/backward of the plain model on a few examples, with its
        own generator and the global RNG restored, so the run's random streams are untouched."""
        idx = torch.arange(min(len(self.x), self.local_batch), device=self.device)
        cond = None if self.labels is None else self.labels[idx]
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            probe = torch.Generator(self.device).manual_seed(self.cfg.seed)
            self.objective(self.model, self.x[idx], probe, cond).backward()
        unused = any(p.requires_grad and p.grad is None for p in self.model.parameters())
        self.opt.zero_grad(set_to_none=True)
        return unused

    def _seed_rank(self) -> None:
        """Ranks above 0 reseed the global torch RNG (dropout masks) from their own stream, so
        replicas never share masks; rank 0 keeps the single-process stream, which is the one
        checkpoints store."""
        if self.rank > 0:
            torch.manual_seed(distributed.rank_seed(self.cfg.seed, self.rank, self.step))

    def close(self) -> None:
        """End the process group if this trainer started it (``train``/``resume`` do this)."""
        if self._owns_group:
            distributed.teardown()
            self._owns_group = False

    def _gen(self, device: torch.device | str = "cpu") -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.cfg.seed)

    # -- persistence ------------------------------------------------------------------------
    def describe(self) -> dict:
        """The run record: configuration, model, data normalization (with where an image
        range came from), the device trained on, and versions."""
        return {
            "train": self.cfg.to_dict(),
            "model": self.model.config(),
            "device": str(self.device),  # where the weights lived: sampling runs there too
            "data": {
                "name": self.data.name,
                "event_shape": list(self.data.event_shape),
                "num_classes": self.data.num_classes,
                "normalization": self.data.normalization.to_dict(),
                "range_source": self.data.range_source,
            },
            "versions": {
                "scorelab": scorelab.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
        }

    def save(self) -> Path:
        """Write a checkpoint of the current step; returns its folder.

        With several ranks every rank must call it: they first check that their weights and
        EMA are identical (they are, as data-parallel replicas; a difference raises), rank 0
        writes, and the others wait at a barrier. The checkpoint does not depend on the number
        of ranks, so a run can resume at any world size.
        """
        if self.world_size > 1:
            state = {f"model.{k}": v for k, v in self.model.state_dict().items()}
            state |= {f"ema.{k}": v for k, v in self.ema.state_dict().items()}
            distributed.assert_same_across_ranks(state, "weights or EMA")
        folder = self._write_checkpoint() if self.rank == 0 else self._checkpoint_folder()
        distributed.barrier()
        return folder

    def _checkpoint_folder(self, step: int | None = None) -> Path:
        return self.run_dir / "checkpoints" / f"step-{self.step if step is None else step:08d}"

    def _write_checkpoint(self) -> Path:
        """Rank 0's part of ``save`` (also used alone on Ctrl-C, where ranks do not wait)."""
        opt_tensors, opt_meta = optimizer_to_tensors(self.opt)
        rng = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        meta = {"optimizer": opt_meta, "world_size": self.world_size, "train": self.cfg.to_dict()}
        if self.scaler is not None:
            meta["grad_scaler"] = self.scaler.state_dict()
        return save_checkpoint(
            self.run_dir,
            self.step,
            {
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict(),
                "optimizer": opt_tensors,
                "rng": rng,
            },
            meta,
        )

    def restore(self) -> list[str]:
        """Load the newest intact checkpoint; returns the damaged ones it skipped. Every rank
        reads the same files, whatever world size wrote them."""
        tensors, meta, skipped = load_checkpoint(self.run_dir)
        check_same_run(meta, self.cfg.to_dict(), self._checkpoint_folder(int(meta["step"])))
        self.model.load_state_dict(tensors["model"])
        self.ema.load_state_dict(tensors["ema"])
        optimizer_from_tensors(self.opt, tensors["optimizer"], meta["optimizer"])
        self.generator.set_state(tensors["rng"]["generator"])
        torch.set_rng_state(tensors["rng"]["torch"])
        if self.scaler is not None and "grad_scaler" in meta:
            self.scaler.load_state_dict(meta["grad_scaler"])
        self.step = int(meta["step"])
        if self.world_size > 1:
            step = {"checkpoint step": torch.tensor(self.step, device=self.device)}
            distributed.assert_same_across_ranks(step, "checkpoints")
        self._seed_rank()
        return skipped

    # -- the loop ---------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        """Linear warm-up to ``lr`` over ``warmup_steps``, then ``lr_schedule``: constant, or a
        decay to 0 at ``steps``, by half a cosine (Loshchilov & Hutter 2017) or linearly."""
        return lr_at(step, self.cfg.lr, self.cfg.warmup_steps, self.cfg.steps, self.cfg.lr_schedule)

    def drop_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Replace a ``label_dropout`` share of labels by the "no label" token (index
        ``num_classes``), so one network learns both ``p(x | u)`` and ``p(x)`` (Ho & Salimans
        2022, Algorithm 1)."""
        if self.cfg.label_dropout == 0:
            return labels
        drop = torch.rand(labels.shape, generator=self.generator, device=labels.device)
        return torch.where(drop < self.cfg.label_dropout, self.model.num_classes, labels)

    def train_step(self) -> tuple[float, float]:
        """One training step; returns (loss, grad norm) of its last update.

        A step is one optimizer update on a minibatch drawn with replacement, or, for a model
        with ``update_phases()`` (WGAN-GP: the critic 5 times, then the generator), one update
        per phase and repeat, each on a fresh minibatch and moving only that phase's
        parameters. The step counter, warm-up and EMA advance once per step.
        """
        for phase in self.phases:
            for _ in range(phase["repeats"]):
                loss, norm = self._update(phase["params"] if len(self.phases) > 1 else None)
        self.step += 1
        self.ema.update(self.model, self.step)
        return loss, norm

    def _update(self, params: list[torch.nn.Parameter] | None) -> tuple[float, float]:
        """One optimizer update of ``params`` (all when None).

        With several ranks, every rank draws the global minibatch indices and keeps its slice,
        per-example noise is drawn at the global size and sliced (``PerExampleDraws``), DDP
        averages the gradients and the returned loss is the mean over the global batch, so the
        step equals one process's up to the order of float sums. With ``precision`` bf16/fp16
        the objective runs under ``torch.autocast``; fp16 scales the loss (``GradScaler``) and
        unscales the gradients before clipping (a step with inf/NaN gradients is skipped by the
        scaler, which then lowers the scale).
        """
        cfg = self.cfg
        idx = torch.randint(len(self.x), (cfg.batch_size,), generator=self.generator,
                            device=self.device)  # fmt: skip
        if self.world_size > 1:
            idx = distributed.shard(idx, self.rank, self.world_size)
        draws = self.draws if self.draws is not None else contextlib.nullcontext()
        with draws:
            cond = None if self.labels is None else self.drop_labels(self.labels[idx])
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.opt.zero_grad(set_to_none=True)
        autocast = (
            contextlib.nullcontext()
            if self.amp_dtype is None
            else torch.autocast(self.device.type, dtype=self.amp_dtype)
        )
        with draws, autocast:
            loss = self.objective(self.train_model, self.x[idx], self.generator, cond)
        mean_loss = distributed.all_mean(loss.detach()) if self.world_size > 1 else loss
        if not torch.isfinite(mean_loss):  # the same verdict on every rank
            raise DivergenceError(
                f"the loss became {mean_loss.item()} at step {self.step} "
                f"(lr {self.lr_at(self.step):.3g}); the last good checkpoint is in "
                f"{self.run_dir / 'checkpoints'}. Lower the learning rate (--lr), keep gradient "
                "clipping on, or check the data"
            )
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
        else:
            loss.backward()
        if params is not None:  # this phase moves only its own parameters
            keep = {id(p) for p in params}
            for p in self.model.parameters():
                if id(p) not in keep:
                    p.grad = None
        clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        stepped = self.model.parameters() if params is None else params
        norm = torch.nn.utils.clip_grad_norm_(stepped, clip)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        return mean_loss.item(), float(norm)

    def run(self, until: int, progress: bool | None = None) -> list[float]:
        """Train until ``self.step == until``, logging and checkpointing as configured.

        SIGINT (Ctrl-C), SIGTERM and SIGUSR1 let the current step finish, save a checkpoint and
        raise ``scorelab.errors.Interrupted`` (a ``KeyboardInterrupt``); the run resumes from
        there. With several ranks they agree on the step to stop at; only rank 0 writes the
        config, log, TensorBoard events and checkpoints and shows progress; the returned losses
        (means over the global batch) are the same on every rank.
        """
        cfg = self.cfg
        main = self.rank == 0
        log_path = self.run_dir / "log.csv"
        new_log = not log_path.exists() or self.step == 0
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.run_dir / "config.json", self.describe())
        losses: list[float] = []
        window: list[float] = []
        start = last = time.perf_counter()
        saved = self.step  # the step of the newest checkpoint (resumed from, or written)
        board = _tensorboard(self.run_dir) if main else None
        log = (
            log_path.open("w" if new_log else "a", newline="") if main else contextlib.nullcontext()
        )
        bar = progress_counter(until, "train", unit="step", initial=self.step,
                               show=progress if main else False)  # fmt: skip
        try:
            with _StopSignals() as stop, log as f, bar:
                writer = csv.writer(f) if main else None
                if writer is not None and new_log:
                    writer.writerow(LOG_FIELDS)
                while True:
                    signum = self._agreed_stop(stop.signum)
                    if signum is not None:  # asked to stop: keep the work done so far
                        if saved != self.step:
                            self.save()
                        raise Interrupted(signum, self.step, str(self._checkpoint_folder()))
                    if self.step >= until:
                        break
                    try:
                        loss, norm = self.train_step()
                    except KeyboardInterrupt:  # raised mid-step (a second Ctrl-C, or no handler)
                        if main:  # alone: the other ranks are being interrupted too
                            self._write_checkpoint()
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
                        if writer is not None:
                            writer.writerow([*row, f"{now - start:.2f}"])
                            f.flush()
                        if board is not None:
                            board.add_scalar("loss", mean, self.step)
                            board.add_scalar("examples_per_s", rate, self.step)
                        bar.set_postfix(loss=f"{mean:.4f}", ex_per_s=f"{rate:.0f}")
                        window, last = [], now
                    if self.step % cfg.checkpoint_every == 0 or self.step == until:
                        self.save()
                        saved = self.step
        finally:
            if board is not None:
                board.close()
        return losses

    def _agreed_stop(self, signum: int | None) -> int | None:
        """The stop signal agreed by every rank (one rank's signal stops all at the same step);
        a single process returns its own."""
        if self.world_size == 1:
            return signum
        flag = torch.tensor([float(signum or 0)], device=self.device)
        if distributed.all_mean(flag).item() == 0:
            return None
        return signum or int(signal.SIGTERM)

    def ema_model(self) -> Denoiser:
        """A copy of the model holding the EMA weights, in eval mode."""
        model = families.get(self.cfg.model).from_config(self.model.config()).to(self.device)
        model.load_state_dict(self.ema.state_dict())
        model.event_shape = self.data.event_shape  # what one sample looks like, for sampling
        return model.eval()


def train(cfg: TrainConfig, progress: bool | None = None, overwrite: bool = False) -> TrainResult:
    """Train from scratch as ``cfg`` says; the run folder ``cfg.out`` gets config, log and
    checkpoints. A folder that already holds files is refused (``resume`` continues a run)
    unless ``overwrite``, which clears a scorelab output first. Under ``torchrun`` each process
    runs this as one rank of a data-parallel group (rank 0 clears)."""
    if not overwrite or distributed.is_main():
        out = repr(str(cfg.out))
        removed = claim(cfg.out, overwrite, name="out folder", flag="overwrite=True", fix=(
            f"continue that run with resume({out}), pass overwrite=True to replace it, or "
            "choose another out"))  # fmt: skip
        if removed:
            print(f"overwrite=True: removed {', '.join(removed)} from {cfg.out}")
    trainer = Trainer(cfg)
    try:
        losses = trainer.run(cfg.steps, progress)
        return TrainResult(trainer.run_dir, trainer.step, losses, trainer.ema_model(), trainer.data)
    finally:
        trainer.close()


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
    configured number). Continues the same loss curve as an uninterrupted run, at any number
    of ranks (the global batch stays ``batch_size``)."""
    record = read_run_config(run_dir)
    cfg = TrainConfig.from_dict({**record["train"], "out": str(run_dir)})
    if steps is not None:
        cfg.steps = steps
    trainer = Trainer(cfg)
    try:
        skipped = trainer.restore()
        for line in skipped if trainer.rank == 0 else ():
            print(f"warning: skipped damaged checkpoint {line}")
        losses = trainer.run(cfg.steps, progress)
        return TrainResult(trainer.run_dir, trainer.step, losses, trainer.ema_model(), trainer.data)
    finally:
        trainer.close()


def load_model(
    run_dir: str | Path, ema: bool = True, device: str | torch.device | None = None
) -> tuple[Denoiser, dict]:
    """The trained model of a run (EMA weights by default) and its run record, on ``device``:
    by default the device it was trained on, or the CPU (with a warning) where this machine
    lacks it (``run_device``)."""
    record = read_run_config(run_dir)
    dev, note = run_device(record, device)
    if note is not None:
        warnings.warn(note, stacklevel=2)
    tensors, meta, skipped = load_checkpoint(Path(run_dir))
    check_same_run(meta, record["train"], Path(run_dir, "checkpoints", f"step-{meta['step']:08d}"))
    for line in skipped:
        print(f"warning: skipped damaged checkpoint {line}")
    model = families.get(record["train"].get("model", "score")).from_config(record["model"])
    model.load_state_dict(tensors["ema" if ema else "model"])
    model.event_shape = tuple(record["data"]["event_shape"])
    return model.to(dev).eval(), record
