"""``scorelab denoise``: Tweedie denoising ``x + sigma^2 score(x)`` with a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from matplotlib.figure import Figure

from scorelab.cli.common import fail, load_run_data, to_unit_interval
from scorelab.metrics import psnr
from scorelab.training import load_model
from scorelab.tweedie import denoised_from_score
from scorelab.viz import draw_grid


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "denoise",
        help="denoise held-out data with Tweedie's formula and report PSNR",
        description="Add Gaussian noise of each --sigma to the run's held-out data (the test "
        "split for digits), denoise with x + sigma^2 score(x, sigma), and report the PSNR of the "
        "noisy and denoised data (model units; images span [-1, 1], a range of 2).",
    )
    p.add_argument("run_dir")
    p.add_argument("--sigma", type=float, nargs="+", default=[0.1, 0.2, 0.5])
    p.add_argument("-n", type=int, default=None, help="number of examples (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="picture (default RUN_DIR/denoise.png)")
    p.set_defaults(run=run)


@torch.no_grad()
def tweedie_psnr(model, clean: torch.Tensor, sigmas: list[float], seed: int, data_range: float):
    """Per sigma: (noisy, denoised, PSNR noisy, PSNR denoised) with PSNR averaged over examples."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for sigma in sigmas:
        noisy = clean + sigma * torch.randn(clean.shape, generator=gen)
        denoised = denoised_from_score(noisy, model.score(noisy, sigma), sigma)
        rows.append((noisy, denoised, psnr(noisy, clean, data_range).mean().item(),
                     psnr(denoised, clean, data_range).mean().item()))  # fmt: skip
    return rows


def run(args: argparse.Namespace) -> int:
    try:
        model, record = load_model(args.run_dir)
        held = load_run_data(record, heldout=True)
    except ValueError as err:
        fail(err)
    clean = held.x[: args.n] if args.n else held.x
    data_range = 2.0 if clean.ndim == 4 else float(clean.max() - clean.min())
    rows = tweedie_psnr(model, clean, args.sigma, args.seed, data_range)
    print(f"Tweedie denoising of {len(clean)} held-out examples ({held.name}, {held.split})")
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
