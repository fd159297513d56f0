"""``scorelab inpaint``: fill in the unknown part of images or vectors with a trained run.

Without ``--input`` it hides part of held-out examples (a region of each image, or columns of
each vector), fills it in and scores the result against the truth, next to filling with the
training mean. With ``--input FILE`` (``.npy`` or ``.csv`` in the data's units) every NaN is an
unknown value to impute (tabular imputation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from scorelab.cli.common import (
    add_data_key,
    add_device,
    diffusers_data,
    fail,
    is_diffusers_record,
    load_any,
    load_run_data,
    to_unit_interval,
)
from scorelab.cli.names import INPAINT_METHODS

if TYPE_CHECKING:
    import torch

REGIONS = ("left", "right", "top", "bottom", "center")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inpaint",
        help="fill in hidden pixels or missing values with a trained run",
        description=__doc__,
    )
    p.add_argument("run_dir", help="folder written by scorelab train, or a diffusers folder")
    p.add_argument("--data", default=None, metavar="DATA",
                   help="held-out data to hide parts of: a built-in name or a file (default "
                   "the run's held-out part; a diffusers folder needs it or --input)")  # fmt: skip
    p.add_argument(
        "--input",
        default=None,
        help=".npy, .npz or .csv in the data's units; NaN marks values to fill in",
    )
    add_data_key(p, "--input")
    p.add_argument(
        "--mask",
        default="left",
        choices=REGIONS,
        help="images: the region to hide in held-out examples (default left)",
    )
    p.add_argument(
        "--known",
        default=None,
        metavar="COLS",
        help="vectors: comma-separated known columns (default the first half)",
    )
    p.add_argument("--method", default="replacement", choices=INPAINT_METHODS,
                   help="replacement (default), or posterior: exact for Gaussian data, but it "
                   "needs an accurate network Jacobian, which learned nets lack")  # fmt: skip
    p.add_argument("-n", type=int, default=16, help="held-out examples to inpaint")
    p.add_argument("--nfe", type=int, default=99, help="Heun network evaluations")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default=None, help="output .npz (default RUN_DIR/inpaint.npz)")
    add_device(p)
    p.set_defaults(run=run)


def region_mask(shape: tuple[int, ...], region: str) -> torch.Tensor:
    """1 = known, 0 = hidden, for an image ``[C, H, W]``: the named half (or centre square)
    is hidden."""
    import torch

    _, h, w = shape
    hidden = torch.zeros(shape, dtype=torch.bool)
    if region == "left":
        hidden[:, :, : w // 2] = True
    elif region == "right":
        hidden[:, :, w // 2 :] = True
    elif region == "top":
        hidden[:, : h // 2] = True
    elif region == "bottom":
        hidden[:, h // 2 :] = True
    else:
        hidden[:, h // 4 : h - h // 4, w // 4 : w - w // 4] = True
    return (~hidden).float()


def column_mask(dim: int, known: str | None) -> torch.Tensor:
    """1 for the known columns of a vector of ``dim`` values."""
    import torch

    if known is None:
        cols = list(range(dim // 2 or 1))
    else:
        try:
            cols = [int(c) for c in known.split(",")]
        except ValueError:
            cols = [-1]
        if not cols or not all(0 <= c < dim for c in cols):
            raise ValueError(f"--known must list columns in 0..{dim - 1}, e.g. 0,2; got {known!r}")
    mask = torch.zeros(dim)
    mask[cols] = 1
    if mask.all():
        raise ValueError("--known names every column, so there is nothing to fill in")
    return mask


def read_input(path: Path, event_shape: tuple[int, ...], key: str | None = None) -> torch.Tensor:
    """Rows of ``path`` in the data's units, NaN where unknown; ``key``: the array of an .npz."""
    import numpy as np
    import torch

    from scorelab.data import AmbiguousArrayError, load_array

    if key is not None and path.suffix != ".npz":
        raise ValueError(f"--data-key picks an array of an .npz file; {path} is not one")
    try:
        if path.suffix == ".npz":
            arr = load_array(path, key=key).x.numpy()
        else:
            arr = np.load(path) if path.suffix == ".npy" else np.genfromtxt(path, delimiter=",")
    except AmbiguousArrayError:
        raise  # worded for the command line by fail()
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    x = torch.as_tensor(np.asarray(arr, dtype=np.float32))
    if x.ndim == len(event_shape):
        x = x.unsqueeze(0)
    if tuple(x.shape[1:]) != event_shape:
        raise ValueError(
            f"{path} holds rows of shape {tuple(x.shape[1:])}; the run models {event_shape}"
        )
    if torch.isinf(x).any():
        raise ValueError(f"{path} holds inf; mark unknown values with NaN")
    return x


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from matplotlib.figure import Figure

    from scorelab import diffusion
    from scorelab.cli.eval_cmd import reference_data
    from scorelab.viz import draw_grid

    try:
        model, record = load_any(args.run_dir, args.device)
        if is_diffusers_record(record):  # no training data: 8-bit pixel units
            train = diffusers_data(record, model.num_classes)
        else:
            train = load_run_data(record)
        shape = train.event_shape
        truth = None
        if args.input:
            raw = read_input(Path(args.input), shape, args.data_key)
            mask = (~torch.isnan(raw)).float()
            x = train.normalization.forward(torch.nan_to_num(raw)) * mask
        else:
            if args.data is None:
                held = load_run_data(record, heldout=True)
            else:
                held = reference_data(args.data, record, None, args.seed)
            truth = held.x[: args.n]
            one = (
                region_mask(shape, args.mask)
                if len(shape) == 3
                else column_mask(shape[0], args.known)
            )
            mask = one.expand_as(truth).clone()
            x = truth * mask
        inp = diffusion.Inpainter(model, x, mask, torch.Generator().manual_seed(args.seed + 1),
                                  method=args.method)  # fmt: skip
        res = diffusion.sample(
            inp,
            len(x),
            shape=shape,
            sampler="heun",
            nfe=args.nfe,
            batch_size=len(x),
            generator=torch.Generator().manual_seed(args.seed),
        )
    except ValueError as err:
        fail(err)
    filled = res.samples
    out = Path(args.out) if args.out else Path(args.run_dir) / "inpaint.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"method": args.method, "nfe": res.nfe, "n": len(x),
              "hidden_share": 1 - mask.mean().item()}  # fmt: skip
    if truth is not None:
        hidden = 1 - mask
        mean = (train.x if len(train) else held.x).mean(0)  # diffusers: no training data
        baseline = mean.expand_as(truth)  # fill with the training mean
        for name, guess in (("rmse", filled), ("rmse_mean_fill", baseline)):
            err = ((guess - truth) * hidden).square().sum() / hidden.sum()
            report[name] = err.sqrt().item()  # model units
        print(
            f"{len(x)} held-out examples, {report['hidden_share']:.0%} of values hidden "
            f"({args.method}, {res.nfe} NFE): RMSE on hidden values {report['rmse']:.4f} "
            f"(filling with the training mean: {report['rmse_mean_fill']:.4f}; model units)"
        )
    else:
        print(f"imputed {int((1 - mask).sum())} missing values in {len(x)} rows ({args.method})")
    np.savez(out, inpainted=train.decode(filled).numpy(), mask=mask.numpy(),
             record=json.dumps(report | {"run": str(args.run_dir)}))  # fmt: skip
    print(f"-> {out}")
    if len(shape) == 3:
        rows = [t for t in (truth, x + (1 - mask) * -1, filled) if t is not None]
        strip = torch.cat([r[:10] for r in rows])
        fig = Figure(figsize=(8, 1 + 0.9 * len(rows)), layout="constrained")
        title = "truth / " * (truth is not None) + f"known part / inpainted ({args.method})"
        draw_grid(fig.add_subplot(), to_unit_interval(strip, train.normalization),
                  nrow=min(10, len(x)), title=title)  # fmt: skip
        fig.savefig(out.with_suffix(".png"), dpi=110)
        print(f"picture -> {out.with_suffix('.png')}")
    return 0
