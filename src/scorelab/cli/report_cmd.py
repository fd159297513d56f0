"""``scorelab report RUN_DIR``: one self-contained HTML page about a trained run.

The page holds the run's configuration, its loss curve, a picture of samples (a grid for
images, a scatter over held-out data in 2-D) and the metric table against held-out data, next
to the data-vs-data floor. It reuses ``samples.npz``, ``samples.eval.json`` and ``eval.json``
(likelihoods) when ``scorelab sample`` / ``scorelab eval`` wrote them, and otherwise draws and
scores samples itself. Pictures are embedded; the page needs no network to be viewed.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

from scorelab.cli.common import fail, load_run_data
from scorelab.cli.eval_cmd import sample_metrics
from scorelab.cli.sample_cmd import class_labels, class_spec, generate, picture, run_family

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="a self-contained HTML report of a trained run",
        description=__doc__,
    )
    p.add_argument("run_dir", help="folder written by scorelab train")
    p.add_argument("-n", type=int, default=500, help="samples to draw if none are saved")
    p.add_argument("--nfe", type=int, default=35, help="Heun NFE when drawing samples")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default=None, help="output HTML (default RUN_DIR/report.html)")
    p.set_defaults(run=run)


def read_log(run_dir: Path) -> tuple[list[int], list[float]]:
    """(steps, mean losses) of the run's CSV log."""
    steps, losses = [], []
    with (run_dir / "log.csv").open() as f:
        for row in csv.DictReader(f):
            steps.append(int(row["step"]))
            losses.append(float(row["loss"]))
    return steps, losses


def loss_figure(steps: list[int], losses: list[float]) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(steps, losses, marker="." if len(steps) < 30 else None)
    if min(losses) > 0:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="training loss (mean over the log interval)", title="loss")
    ax.grid(alpha=0.3)
    return fig


def _saved_samples(run_dir: Path) -> torch.Tensor | None:
    import numpy as np
    import torch

    path = run_dir / "samples.npz"
    if not path.exists():
        return None
    with np.load(path) as arrays:
        return torch.from_numpy(arrays["model_units"]).float() if "model_units" in arrays else None


def build_report(run_dir: Path, n: int, nfe: int, seed: int) -> str:
    """The report's HTML."""
    from scorelab.metrics import DESCRIPTIONS
    from scorelab.training import load_model
    from scorelab.viz.html import esc, figure, page, table

    model, record = load_model(run_dir, device="cpu")  # the report computes on the CPU
    train = load_run_data(record)
    held = load_run_data(record, heldout=True)
    cfg = record["train"]
    parts: list[str] = []

    n_params = sum(p.numel() for p in model.parameters())
    family = run_family(record)
    score = family == "score"
    summary = [
        ["data", f"{record['data']['name']} ({len(train)} training examples, event shape "
                 f"{tuple(record['data']['event_shape'])})"],
        ["model", f"{family}: {cfg['net']} ({n_params:,} parameters)"
                  + (f", parameterization {cfg['parameterization']}" if score else "")],
        ["objective", cfg["objective"] if score else f"the {family.upper()}'s own loss"],
        ["versions", ", ".join(f"{k} {v}" for k, v in record["versions"].items())],
    ]  # fmt: skip
    parts.append("<h2>Run</h2>" + table(None, summary, cls="summary"))

    if (run_dir / "log.csv").exists():
        steps, losses = read_log(run_dir)
        if steps:
            parts.append("<h2>Training</h2>")
            parts.append(f"<p>{steps[-1]} steps; final logged loss {losses[-1]:.4g}.</p>")
            parts.append(figure(loss_figure(steps, losses), "training loss", "loss curve"))

    samples = _saved_samples(run_dir)
    source = "saved by scorelab sample (samples.npz)"
    if samples is None:
        spec = class_spec(None, model, family)  # a conditional run: classes drawn from the data
        labels = None if spec is None else class_labels(spec, train, 0, n, n, seed)
        res = generate(record, model, n, "heun", nfe, "edm", seed, labels)
        samples, source = res.samples, f"drawn for this report: Heun, {res.nfe} NFE, seed {seed}"
        if labels is not None:
            source += ", classes drawn from the training data's frequencies"
    fig = picture(samples, train, f"{len(samples)} samples")
    parts.append("<h2>Samples</h2>" + f"<p>{esc(source)}.</p>")
    if fig is not None:
        parts.append(figure(fig, "samples", "samples"))

    saved = run_dir / "samples.eval.json"
    if saved.exists() and _saved_samples(run_dir) is not None:
        result = json.loads(saved.read_text())
        metrics, floor = result["metrics"], result.get("floor")
    else:
        metrics, floor = sample_metrics(samples, held, train, seed)
    rows = [[name, value, "" if not floor or name not in floor else floor[name],
             DESCRIPTIONS.get(name, "")] for name, value in metrics.items()]  # fmt: skip
    parts.append(
        f"<h2>Metrics</h2><p>Against held-out data: {esc(held.name)} ({esc(held.split)}, "
        f"{len(held)} examples). The data floor is the same metric for training data in place "
        "of samples.</p>" + table(["metric", "samples", "data floor", "meaning"], rows, "metrics")
    )

    nll = run_dir / "eval.json"
    if nll.exists():
        lik = json.loads(nll.read_text()).get("likelihood", {})
        rows = [[k, v] for k, v in lik.items()]
        parts.append("<h2>Likelihood</h2>" + table(None, rows, cls="likelihood"))
    else:
        parts.append(
            "<h2>Likelihood</h2><p>Not computed; run <code>scorelab eval "
            f"{esc(run_dir)} --nll test</code> and report again.</p>"
        )

    cfg_rows = [[k, json.dumps(v) if isinstance(v, dict | list) else v] for k, v in cfg.items()]
    parts.append("<h2>Configuration</h2>" + table(["key", "value"], cfg_rows, cls="config"))
    return page(f"scorelab run: {run_dir.name}", "\n".join(parts))


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    try:
        html = build_report(run_dir, args.n, args.nfe, args.seed)
    except (ValueError, OSError) as err:
        fail(err)
    out = Path(args.out) if args.out else run_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    print(f"report -> {out}")
    return 0
