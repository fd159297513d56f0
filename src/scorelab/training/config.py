"""The training configuration: a typed dataclass, built at the entry point, validated by key."""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as ``config.json`` beside the weights."""

    data: str = "moons"  # a built-in data set (scorelab.data.DATASETS) or a path
    n: int | None = None  # number of examples (toy sets: fresh draws; files: the first n)
    data_kwargs: dict[str, Any] = field(default_factory=dict)  # loader options, e.g. size
    model: str = "score"  # "score" (a denoiser), or a baseline: "vae", "gan", "dae"
    conditional: bool = False  # learn p(x | label) and p(x) in one net (needs labelled data)
    label_dropout: float = 0.1  # conditional: share of labels replaced by the "no label" token
    objective: str = "edm"  # a name from scorelab.diffusion.OBJECTIVES
    objective_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"sigma": 0.1}
    net: str = "mlp"  # "mlp" (vectors) or "unet" (images)
    parameterization: str = "edm"  # "edm", "eps", "score" or "energy"
    net_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to scorelab.nets.build
    steps: int = 2000  # optimizer steps
    batch_size: int = 256  # examples per step (drawn with replacement)
    lr: float = 2e-3  # peak AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 100  # linear learning-rate warm-up
    lr_schedule: str = "constant"  # after warm-up: "constant", or "cosine"/"linear" decay to 0
    grad_clip: float = 1.0  # max global gradient norm (0: off)
    ema_decay: float = 0.999  # decay of the exponential moving average of the weights
    precision: str = "fp32"  # "fp32", or autocast "bf16" / "fp16" (fp16 with loss scaling)
    compile: bool = False  # torch.compile the model for training
    seed: int = 0  # seeds data draws, initialization and noise
    device: str = "auto"  # "auto" (cuda, mps, cpu), or a torch device string
    checkpoint_every: int = 1000  # steps between checkpoints (and one at the end)
    log_every: int = 50  # steps between CSV log rows
    out: str = "scorelab-out/train"  # the run folder (must be empty or new; see train())

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name))
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"config key {name!r} must be >= 1; got {getattr(self, name)}")
        if not 0 <= self.label_dropout < 1:
            raise ValueError(f"config key 'label_dropout' must be in [0, 1): {self.label_dropout}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"config key 'precision' must be one of {', '.join(PRECISIONS)}; got "
                f"{self.precision!r}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"config key 'lr_schedule' must be one of {', '.join(LR_SCHEDULES)}; got "
                f"{self.lr_schedule!r}"
            )
        for name in ("lr", "ema_decay"):
            if not 0 < getattr(self, name) < (1 if name == "ema_decay" else float("inf")):
                raise ValueError(f"config key {name!r} is out of range: {getattr(self, name)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, naming any unknown key and the valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown config key(s) {', '.join(map(repr, unknown))}; valid keys: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a TOML file (flat keys; tables for the ``*_kwargs`` dicts), then apply overrides."""
        return cls.from_dict({**read_toml(path), **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The values of a TOML config file, unchecked (``TrainConfig.from_dict`` checks them)."""
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"cannot read config file {path}: {err}") from err


PRECISIONS = ("fp32", "bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine", "linear")
_HINTS: dict[str, Any] = {}


def _check_type(name: str, value: Any) -> None:
    """Raise if ``value`` does not match the field's annotation (ints accepted for floats)."""
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(TrainConfig))
    expected = _HINTS[name]
    options = typing.get_args(expected) if isinstance(expected, types.UnionType) else (expected,)
    for opt in options:
        origin = typing.get_origin(opt) or opt
        if opt is type(None) and value is None:
            return
        if origin is bool and isinstance(value, bool):
            return
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if origin in (str, dict) and isinstance(value, origin):
            return
    shown = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"config key {name!r} must be {shown}; got {value!r} ({type(value).__name__})")
