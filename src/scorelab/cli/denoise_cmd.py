"""``scorelab denoise``: Tweedie denoising ``x + sigma^2 score(x)`` with a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from scorelab.cli.common import (
    add_device,
    fail,
    load_any,
    load_run_data,
    to_unit_interval,
)

if TYPE_CHECKING:
    import torch


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "denoise",
        help="denoise held-out data with Tweedie's formula and report PSNR",
        description="Add Gaussian noise of each --sigma to the run's held-out data (the test "
        "split for digits), denoise with x + sigma^2 score(x, sigma), and report the PSNR of the "
        "noisy and denoised data (model units; images span [-1, 1], a range of 2).",
    )
    p.add_argument("run_dir", help="folder written by scorelab train, or a diffusers folder")
    p.add_argument("--data", default=None, metavar="DATA",
                   help="held-out data: a built-in name or a file (default the run's held-out "
                   "part; needed for a diffusers folder)")  # fmt: skip
    p.add_argument("--sigma", type=float, nargs="+", default=[0.1, 0.2, 0.5],
                   help="noise levels to add and remove (model units)")  # fmt: skip
    p.add_argument("-n", type=int, default=None, help="number of examples (default all)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default=None, help="picture (default RUN_DIR/denoise.png)")
    add_device(p)
    p.set_defaults(run=run)


def tweedie_psnr(model, clean: torch.Tensor, sigmas: list[float], seed: int, data_range: float,
                 labels: torch.Tensor | None = None):  # fmt: skip
    """Per sigma: (noisy, denoised, PSNR noisy, PSNR denoised) with PSNR averaged over examples;
    computed on the model's device, the images returned on the CPU (noise drawn on the CPU).
    ``labels``: the examples' classes, for a class-conditional model (``E[x | y, c]``)."""
    import torch

    from scorelab.metrics import psnr
    from scorelab.tweedie import denoised_from_score

    gen = torch.Generator().manual_seed(seed)
    clean = clean.cpu()
    device = next(model.parameters()).device
    given = {} if labels is None else {"cond": labels.to(device)}
    rows = []
    for sigma in sigmas:
        noisy = clean + sigma * torch.randn(clean.shape, generator=gen)
        with torch.no_grad():
            score = model.score(noisy.to(device), sigma, **given).cpu()
        denoised = denoised_from_score(noisy, score, sigma)
        rows.append((noisy, denoised, psnr(noisy, clean, data_range).mean().item(),
                     psnr(denoised, clean, data_range).mean().item()))  # fmt: skip
    return rows


def run(args: argparse.Namespace) -> int:
    import torch
    from matplotlib.figure import Figure

    from scorelab.cli.eval_cmd import reference_data
    from scorelab.viz import draw_grid

    try:
        model, record = load_any(args.run_dir, args.device)
        if args.data is None:
            held = load_run_data(record, heldout=True)
        else:
            held = reference_data(args.data, record, None, args.seed)
    except ValueError as err:
        fail(err)
    clean = held.x[: args.n] if args.n else held.x
    data_range = 2.0 if clean.ndim == 4 else float(clean.max() - clean.min())
    labels = None
    if getattr(model, "num_classes", None) is not None and held.labels is not None:
        labels = held.labels[: len(clean)]  # a class-conditional run denoises given the class
    rows = tweedie_psnr(model, clean, args.sigma, args.seed, data_range, labels)
    given = "" if labels is None else ", each given its class (class-conditional run)"
    print(f"Tweedie denoising of {len(clean)} held-out examples ({held.name}, {held.split}){given}")
    print("  sigma   PSNR noisy   PSNR denoised   gain")
    for sigma, (_, _, p_noisy, p_den) in zip(args.sigma, rows, strict=True):
        print(f"  {sigma:5.2f}   {p_noisy:8.2f} dB   {p_den:10.2f} dB   {p_den - p_noisy:+.2f} dB")
    if clean.ndim == 4:
        fig = Figure(figsize=(8, 2.2 * len(rows)), layout="constrained")
        for i, (sigma, (noisy, den, _, _)) in enumerate(zip(args.sigma, rows, strict=True)):
            strip = torch.cat([clean[:10], noisy[:10], den[:10]])
            draw_grid(fig.add_subplot(len(rows), 1, i + 1),
                      to_unit_interval(strip, held.normalization), nrow=10,
                      title=f"sigma = {sigma}: clean / noisy / denoised")  # fmt: skip
        out = Path(args.out) if args.out else Path(args.run_dir) / "denoise.png"
        fig.savefig(out, dpi=110)
        print(f"picture -> {out}")
    return 0
