"""``scorelab quickstart``: the main job, on what the library can do today.

It samples a 2-D Gaussian mixture, whose every moment and smoothed score is known exactly,
with MALA and HMC, checks the estimates against the exact answers in units of their Monte
Carlo standard error, and pictures the draws and the exact score field at several noise levels.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from matplotlib.figure import Figure

from scorelab import densities, mcmc
from scorelab.cli.common import out_dir, write_run_record
from scorelab.viz import density_grid, plot_samples_over_density

SIGMAS = (0.0, 0.5, 1.0, 2.0)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quickstart",
        help="the main job: sample a known 2-D mixture, check against exact answers, picture it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="scorelab-out/quickstart", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chains", type=int, default=32)
    p.add_argument("--steps", type=int, default=2000, help="draws per chain after warm-up")
    p.add_argument("--quick", action="store_true", help="a few hundred steps (for smoke tests)")
    p.set_defaults(run=run)


def target() -> densities.GaussianMixture:
    """Three components, one of them elongated and tilted."""
    tilted = torch.tensor([[1.0, 0.7], [0.7, 0.8]])
    covs = torch.stack([tilted, 0.3 * torch.eye(2), torch.diag(torch.tensor([0.2, 1.0]))])
    return densities.GaussianMixture([0.5, 0.3, 0.2], [[-1.5, -0.5], [1.5, 1.5], [2.0, -1.5]], covs)


def check_table(res: mcmc.MCMCResult, gm: densities.GaussianMixture) -> tuple[str, float]:
    """Estimated mean and variance per coordinate against the exact ones, in MCSE units."""
    x = res.samples.double()
    rows, worst = [], 0.0
    exact_var = gm.cov.diagonal()
    for label, series, truth in (
        ("mean", x, gm.mean),
        ("var", (x - gm.mean) ** 2, exact_var),
    ):
        est = series.mean((0, 1))
        se = mcmc.mcse(series)
        for i in range(2):
            z = ((est[i] - truth[i]) / se[i]).item()
            worst = max(worst, abs(z))
            rows.append(
                f"  {label}[{i}]  exact {truth[i].item():8.4f}  estimate {est[i].item():8.4f}"
                f"  mcse {se[i].item():.4f}  z {z:+.2f}"
            )
    return "\n".join(rows), worst


def score_field_figure(gm: densities.GaussianMixture) -> Figure:
    """Density contours and the exact score of ``X + sigma N`` for each sigma in ``SIGMAS``."""
    fig = Figure(figsize=(4 * len(SIGMAS), 4), layout="constrained")
    lo, hi = np.array([-5.0, -5.0]), np.array([5.0, 5.0])
    for j, sigma in enumerate(SIGMAS):
        ax = fig.add_subplot(1, len(SIGMAS), j + 1)
        dens = gm if sigma == 0 else gm.smoothed(sigma)
        xx, yy, z = density_grid(dens, lo, hi, 150)
        ax.contourf(xx, yy, z, levels=12, cmap="Blues")
        g = torch.stack(torch.meshgrid(*[torch.linspace(-4.5, 4.5, 19)] * 2, indexing="xy"), -1)
        s = dens.score(g.reshape(-1, 2))
        s = s / (1 + s.norm(dim=-1, keepdim=True))  # squash long arrows for legibility
        pts = g.reshape(-1, 2)
        ax.quiver(pts[:, 0], pts[:, 1], s[:, 0], s[:, 1], color="k", width=0.004)
        ax.set_title(f"score of p_sigma, sigma = {sigma}" if sigma else "score of p (the data)")
        ax.set_aspect("equal")
    return fig


def run(args: argparse.Namespace) -> int:
    folder = out_dir(args.out)
    steps, warmup = (300, 300) if args.quick else (args.steps, 1000)
    gm = target()
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    lines = [f"target: {gm!r}, weights {gm.weights.tolist()}", ""]
    results = {}
    for kernel in ("mala", "hmc"):
        res = mcmc.sample(gm, kernel, chains=args.chains, steps=steps, warmup=warmup, generator=gen)
        results[kernel] = res
        table, worst = check_table(res, gm)
        lines += [res.report(), f"check against the exact moments (worst |z| = {worst:.2f}):",
                  table, ""]  # fmt: skip
    exact = gm.sample(args.chains * steps, generator=gen)

    fig = Figure(figsize=(12, 4), layout="constrained")
    panels = [("exact draws", exact.numpy())] + [
        (f"{k}: {r.samples.shape[0]} chains", r.samples.reshape(-1, 2).numpy())
        for k, r in results.items()
    ]
    for j, (title, x) in enumerate(panels):
        plot_samples_over_density(fig.add_subplot(1, 3, j + 1), gm, x, title)
    fig.savefig(folder / "quickstart.png", dpi=110)
    score_field_figure(gm).savefig(folder / "score_field.png", dpi=110)

    lines.append(f"total time {time.perf_counter() - t0:.1f} s")
    text = "\n".join(lines)
    print(text)
    (folder / "summary.txt").write_text(text + "\n")
    write_run_record(folder, "quickstart", vars(args) | {"run": None})
    print(f"wrote {folder}/quickstart.png, score_field.png, summary.txt, run.json")
    return 0
