"""Helpers shared by the subcommands: output folders, run records, argument parsing."""

from __future__ import annotations

import importlib
import json
import platform
import sys
from pathlib import Path
from typing import Any, NoReturn

import torch

import scorelab


def out_dir(path: str) -> Path:
    """Create (if needed) and return the output folder."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_run_record(folder: Path, command: str, config: dict[str, Any]) -> Path:
    """``run.json``: the command, its configuration, seed and library versions."""
    record = {
        "command": command,
        "argv": sys.argv[1:],
        "config": config,
        "versions": {
            "scorelab": scorelab.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    path = folder / "run.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def parse_params(items: list[str]) -> dict[str, float | int | str]:
    """``["dim=10", "scale=3"]`` -> ``{"dim": 10, "scale": 3.0}``."""
    out: dict[str, float | int | str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(
                f"error: --param expects KEY=VALUE (e.g. --param dim=10); got {item!r}"
            )
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def load_function(spec: str):
    """``"package.module:function"`` -> the function (for user log-densities)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"error: expected MODULE:FUNCTION (e.g. mymodels:log_p); got {spec!r}")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SystemExit(f"error: cannot import module {module_name!r}: {err}") from err
    if not hasattr(module, attr):
        raise SystemExit(f"error: module {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


def fail(err: Exception | str) -> NoReturn:
    """Exit with ``error: ...`` (no traceback) for a user mistake."""
    raise SystemExit(f"error: {err}")


def load_run_data(record: dict, heldout: bool = False):
    """The data a run was trained on (re-drawn with its seed), or its held-out part: the test
    split of digits, or a fresh draw for toy sets; files have no held-out part."""
    from scorelab.data import TOY_NAMES, Normalization, load

    train_cfg = record["train"]
    name, seed = train_cfg["data"], train_cfg["seed"]
    norm = Normalization.from_dict(record["data"]["normalization"])
    if not heldout:
        return load(name, n=train_cfg["n"], generator=torch.Generator().manual_seed(seed),
                    **train_cfg.get("data_kwargs", {}))  # fmt: skip
    if name == "digits":
        return load("digits", split="test", normalization=norm)
    if name in TOY_NAMES:
        return load(name, n=train_cfg["n"] or 10_000, split="test", normalization=norm,
                    generator=torch.Generator().manual_seed(seed + 1))  # fmt: skip
    raise ValueError(f"run data {name!r} has no held-out part; pass a built-in data set")


def to_unit_interval(x: torch.Tensor, normalization) -> torch.Tensor:
    """Model-unit images to [0, 1] for display: (x + 1) / 2 for [-1, 1] data."""
    if normalization.kind == "unit_range":
        return (x + 1) / 2
    lo, hi = x.amin(), x.amax()
    return (x - lo) / (hi - lo).clamp_min(1e-12)
