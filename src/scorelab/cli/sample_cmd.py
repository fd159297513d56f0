"""``scorelab sample``: draw samples from a trained run, save them and a picture."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

import scorelab
from scorelab import diffusion
from scorelab.cli.common import fail, load_run_data, to_unit_interval
from scorelab.training import load_model
from scorelab.viz import draw_grid, scatter_2d


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="generate samples from a trained run",
        description="Sample a trained model (EMA weights) and write .npz plus a picture: a grid "
        "for images, a scatter over the data for 2-D sets. Samples are saved in the data's units.",
    )
    p.add_argument("run_dir", help="folder written by scorelab train")
    p.add_argument("--sampler", default="heun", choices=list(diffusion.SAMPLERS))
    p.add_argument("--nfe", type=int, default=35, help="denoiser evaluations per sample")
    p.add_argument("--process", default="edm", choices=list(diffusion.PROCESSES))
    p.add_argument("-n", type=int, default=1000, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output .npz (default RUN_DIR/samples.npz)")
    p.set_defaults(run=run)


def generate(model, n: int, sampler: str, nfe: int, process: str, seed: int):
    """Samples of a trained model in model units."""
    return diffusion.sample(model, n, sampler=sampler, nfe=nfe, process=process,
                            generator=torch.Generator().manual_seed(seed))  # fmt: skip


def picture(samples: torch.Tensor, data, title: str) -> Figure | None:
    """A grid (images) or a scatter over the data (2-D); ``None`` for other shapes."""
    fig = Figure(figsize=(6, 6), layout="constrained")
    ax = fig.add_subplot()
    if samples.ndim == 4:
        draw_grid(ax, to_unit_interval(samples[:100], data.normalization), title=title)
    elif samples.shape[1] == 2:
        scatter_2d(ax, data.decode(samples), data.decode(data.x[: len(samples)]), title)
    else:
        return None
    return fig


def run(args: argparse.Namespace) -> int:
    try:
        model, record = load_model(args.run_dir)
        data = load_run_data(record)
        res = generate(model, args.n, args.sampler, args.nfe, args.process, args.seed)
    except ValueError as err:
        fail(err)
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    decoded = data.decode(res.samples)
    provenance = {"run": str(args.run_dir), "sampler": args.sampler, "nfe": res.nfe,
                  "process": args.process, "seed": args.seed, "versions": record["versions"],
                  "scorelab": scorelab.__version__}  # fmt: skip
    np.savez(out, samples=decoded.numpy(), model_units=res.samples.numpy(), nfe=res.nfe,
             record=json.dumps(provenance))  # fmt: skip
    print(f"{args.n} samples with {args.sampler} ({res.nfe} NFE, {res.wall_time:.1f} s) -> {out}")
    fig = picture(res.samples, data, f"{args.sampler}, {res.nfe} NFE")
    if fig is not None:
        fig.savefig(out.with_suffix(".png"), dpi=110)
        print(f"picture -> {out.with_suffix('.png')}")
    return 0
