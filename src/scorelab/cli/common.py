"""Helpers shared by the subcommands: output folders, run records, argument parsing."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import scorelab

if TYPE_CHECKING:
    import torch


def add_overwrite(p: argparse.ArgumentParser) -> None:
    """``--overwrite``: clear ``--out`` first when it holds an earlier scorelab output."""
    p.add_argument("--overwrite", action="store_true",
                   help="clear --out first if it holds an earlier scorelab output (without it, "
                   "a folder that holds files is refused)")  # fmt: skip


def out_dir(
    path: str | Path, command: str, overwrite: bool = False, *, resume: bool = False,
    reuse: bool = False, record: bool = True,
) -> Path:  # fmt: skip
    """Claim ``--out`` for one run of ``command`` (``scorelab.outputs.claim``): a folder that
    holds files is refused, naming ``--overwrite``, ``--out DIR`` and (``resume``) ``--resume``,
    unless ``--overwrite`` clears it (a scorelab output only; it says what it removed) or
    (``reuse``) it holds an earlier output of the same command. With ``record`` a first
    ``run.json`` marks the folder as this command's until the final one replaces it."""
    from scorelab.outputs import claim

    folder = Path(path)
    if reuse and not overwrite and _command_of(folder) == command:
        return folder
    fix = f"continue it with scorelab train --resume {folder}, " if resume else ""
    fix += "pass --overwrite to replace it, or choose another folder with --out DIR"
    try:
        removed = claim(folder, overwrite, name="--out", fix=fix, flag="--overwrite")
    except ValueError as err:
        fail(err)
    if removed:
        print(f"--overwrite: removed {', '.join(removed)} from {folder}", flush=True)
    if record:
        write_run_record(folder, command, {"status": "started"})
    return folder


def _command_of(folder: Path) -> str | None:
    """The command recorded in ``folder/run.json``, if any."""
    try:
        return json.loads((folder / "run.json").read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        return None


def write_run_record(folder: Path, command: str, config: dict[str, Any], **extra: Any) -> Path:
    """``run.json``: the command, its configuration, seed and library versions (and ``extra``
    top-level keys, such as the files it wrote)."""
    import torch

    record = {
        "command": command,
        "argv": sys.argv[1:],
        "config": config,
        "versions": {
            "scorelab": scorelab.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        **extra,
    }
    path = folder / "run.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def parse_params(items: list[str], flag: str = "--param") -> dict[str, float | int | str]:
    """``["dim=10", "scale=3"]`` -> ``{"dim": 10, "scale": 3.0}`` (``flag`` names the option
    in the error)."""
    out: dict[str, float | int | str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {flag} expects KEY=VALUE (e.g. {flag} dim=10); got {item!r}")
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


# The library's messages suggest Python (``step_size=``, ``x.reshape(-1, 1)``); on the command
# line the same fix is a flag, a --config key or a change to the data file. (pattern, wording)
# pairs, applied by ``fail``; tests/cli/test_cli_errors.py triggers each one.
_TOML = "in a --config TOML file"
CLI_WORDING = (
    (r"pass step_size=$", "pass --step-size"),
    (r"^step_size must be", "--step-size must be"),
    (r"^n_leapfrog must be", "--leapfrog must be"),
    (r"pass init= with points where it is finite \(inside the support\)",
     "the chains start uniformly in [-2, 2]^dim: make the log-density finite there"),
    (r"^clamp=True needs (.*): pass clamp=False$", r"clamping needs \1: pass --no-clamp"),
    (r", e\.g\. x = x\[torch\.isfinite\(x\)\.flatten\(1\)\.all\(1\)\]", " in the data file"),
    (r"for N scalars pass x\.reshape\(-1, 1\); for one example pass x\.reshape\(1, -1\)",
     "save N scalars as one column [N, 1], or one example as one row [1, D]"),
    (r"for grayscale images add a channel axis, x\[:, None\]; for vectors flatten, "
     r"x\.reshape\(len\(x\), -1\)",
     "save grayscale images as [N, 1, H, W] (with a channel axis), or vectors as [N, D]"),
    (r"drop them, e\.g\. x = x\[:, x\.std\(0\) > 0\]", "drop those columns from the data file"),
    (r", e\.g\. labels = torch\.unique\(labels, return_inverse=True\)\[1\]", " in the data file"),
    (r"pass size=\(H, W\) to resize every image, e\.g\. size=\((\d+), (\d+)\)",
     rf"to resize every image, put data_kwargs = {{ size = [\1, \2] }} {_TOML}"),
    (r"or pass label_column=\.\.\. if it holds labels",
     f"or name the label column with data_kwargs = {{ label_column = ... }} {_TOML}"),
)  # fmt: skip


def cli_wording(message: str) -> str:
    """A library error message as a command-line user should read it (``CLI_WORDING``)."""
    for pattern, wording in CLI_WORDING:
        message = re.sub(pattern, wording, message, flags=re.MULTILINE)
    return message


def fail(err: Exception | str) -> NoReturn:
    """Exit with ``error: ...`` (no traceback) for a user mistake, worded for the command line."""
    data = sys.modules.get("scorelab.data")  # never imported: err cannot come from it
    if data is not None and isinstance(err, data.AmbiguousArrayError):  # flags, not arguments
        err = data.AmbiguousArrayError(err.path, err.keys, cli=True)
    raise SystemExit(f"error: {cli_wording(str(err))}")


def load_run_data(record: dict, heldout: bool = False):
    """The data a run was trained on (re-drawn with its seed), or its held-out part: the test
    split of digits, or a fresh draw for toy sets; files have no held-out part."""
    import torch

    from scorelab.data import TOY_NAMES, Normalization, load

    if is_diffusers_record(record):
        raise ValueError(
            f"{record['diffusers']} is a diffusers folder, which carries no data: name the "
            "data (a built-in name or a file, e.g. --reference DATA, --nll DATA or --data DATA)"
        )
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


# -- diffusers folders (issue 19): one loader for sample, eval, denoise and inpaint ------------
DIFFUSERS_PIXELS = (0.0, 255.0)  # a diffusers image model's data units: 8-bit pixels on [-1, 1]


def is_diffusers_record(record: dict | None) -> bool:
    """Whether ``record`` stands for a diffusers folder (``run_record``) rather than a run."""
    return record is not None and "diffusers" in record


def run_record(path: str | Path) -> dict:
    """The run record of a scorelab run folder (``config.json``), or for a folder saved by
    diffusers' ``save_pretrained`` (``model_index.json``, or ``config.json`` with
    ``_class_name``) a stand-in naming it: CPU, no data (``load_run_data`` asks for some), and
    data files read in their own range (8-bit pixels 0..255 onto the model's [-1, 1])."""
    from scorelab.interop import is_diffusers_folder
    from scorelab.training import read_run_config

    if not is_diffusers_folder(path):
        return read_run_config(path)
    import importlib.metadata

    try:
        version = importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    return {"diffusers": str(path), "device": "cpu", "data": {"normalization": None},
            "versions": {"scorelab": scorelab.__version__, "diffusers": version}}  # fmt: skip


def load_any(path: str | Path, device: str | torch.device | None, record: dict | None = None):
    """``(model, record)`` of a scorelab run folder (``training.load_model``: EMA weights) or of
    a diffusers folder (``interop.from_diffusers``: its UNet2DModel and scheduler), on
    ``device``: a ``torch.device``, or a ``--device`` value that ``choose_device`` resolves
    (``None``: the run's own). The record as ``run_record`` gives it (read here unless passed),
    with the model's event shape."""
    import torch

    from scorelab.interop import from_diffusers
    from scorelab.training import load_model

    record = run_record(path) if record is None else record
    if not isinstance(device, torch.device):
        device = choose_device(device, record)
    if not is_diffusers_record(record):
        return load_model(path, device=device)
    model = from_diffusers(path, device=device)
    record["data"]["event_shape"] = list(model.event_shape)
    return model, record


def diffusers_data(record: dict, num_classes: int | None = None):
    """An empty stand-in for a diffusers folder's training data: the event shape, 8-bit pixel
    units (``DIFFUSERS_PIXELS``) and the model's classes, for the commands that decode samples."""
    import torch

    from scorelab.data import Dataset, Normalization

    shape = tuple(record["data"]["event_shape"])
    pixels = Normalization.to_unit_range(None, *DIFFUSERS_PIXELS)
    return Dataset(torch.zeros(0, *shape), None, pixels, record["diffusers"], "none", num_classes)


def to_unit_interval(x: torch.Tensor, normalization) -> torch.Tensor:
    """Model-unit images to [0, 1] for display: (x + 1) / 2 for [-1, 1] data."""
    if normalization.kind == "unit_range":
        return (x + 1) / 2
    lo, hi = x.amin(), x.amax()
    return (x - lo) / (hi - lo).clamp_min(1e-12)


# -- data and device options shared by the commands (issue 18) ---------------------------------
def add_data_key(p: argparse.ArgumentParser, what: str) -> None:
    """``--data-key NAME``: which array of an ``.npz`` with several is the data."""
    p.add_argument("--data-key", dest="data_key", metavar="NAME", default=None,
                   help=f"the array of {what} to use when an .npz holds several (default: the "
                   "only one, or 'x' / 'data')")  # fmt: skip


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device``: where the model runs (default: where the run was trained)."""
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1, mps (default: the device the run was trained on, "
                   "else cpu with a note)")  # fmt: skip


def parse_data_range(text: str) -> tuple[float, float]:
    """``"0,255"`` -> ``(0.0, 255.0)``, for ``--data-range LO,HI``."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        lo = hi = float("nan")
    if not lo < hi or not all(abs(v) < float("inf") for v in (lo, hi)):
        raise argparse.ArgumentTypeError(
            f"expected LO,HI with LO < HI (e.g. --data-range 0,1); got {text!r}"
        )
    return lo, hi


def choose_device(spec: str | None, record: dict) -> torch.device:
    """The device to run a trained run's model on: ``--device`` if given (an error naming the
    flag when this machine lacks it), else the run's own, else the CPU with a printed note."""
    import torch

    from scorelab._utils import device_problem
    from scorelab.training import pick_device, run_device

    if spec is not None:
        try:
            dev = pick_device(spec)
        except ValueError:
            fail(f"--device {spec!r} is not a device; use cpu, cuda, cuda:1 or mps")
        problem = device_problem(dev)
        if problem is not None:
            fail(f"--device {spec}: {problem}; use --device cpu")
        return dev
    dev, note = run_device(record)
    if note is not None:
        print(f"note: {note} (choose with --device)")
    return torch.device(dev)
