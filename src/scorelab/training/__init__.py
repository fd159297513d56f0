"""Training: configuration, the trainer, EMA and crash-safe checkpoints.

>>> from scorelab.training import TrainConfig, train
>>> result = train(TrainConfig(data="moons", steps=2000, out="runs/moons"))
>>> result.model(x, sigma)   # the EMA denoiser
"""

from scorelab.training.checkpoint import load_checkpoint, save_checkpoint
from scorelab.training.config import TrainConfig
from scorelab.training.ema import EMA
from scorelab.training.trainer import (
    Trainer,
    TrainResult,
    build_model,
    build_objective,
    load_model,
    pick_device,
    read_run_config,
    resume,
    train,
)

__all__ = [
    "EMA",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_model",
    "build_objective",
    "load_checkpoint",
    "load_model",
    "pick_device",
    "read_run_config",
    "resume",
    "save_checkpoint",
    "train",
]
