"""Training: configuration, the trainer, EMA, crash-safe checkpoints and data-parallel runs
(``torchrun --nproc_per_node N -m scorelab train ...``; helpers in ``training.distributed``).

>>> from scorelab.training import TrainConfig, train
>>> result = train(TrainConfig(data="moons", steps=2000, out="runs/moons"))
>>> result.model(x, sigma)   # the EMA denoiser
"""

from scorelab.training import distributed
from scorelab.training.checkpoint import load_checkpoint, save_checkpoint
from scorelab.training.config import TrainConfig
from scorelab.training.ema import EMA
from scorelab.training.trainer import (
    Trainer,
    TrainResult,
    autocast_dtype,
    build_model,
    build_objective,
    load_model,
    pick_device,
    read_run_config,
    resume,
    run_device,
    train,
)

__all__ = [
    "EMA",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "autocast_dtype",
    "build_model",
    "build_objective",
    "distributed",
    "load_checkpoint",
    "load_model",
    "pick_device",
    "read_run_config",
    "resume",
    "run_device",
    "save_checkpoint",
    "train",
]
