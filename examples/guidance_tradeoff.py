"""Class accuracy and Frechet distance of a class-conditional digits model across guidance
weights: the trade-off curve, plus a per-class grid at the default weight.

    scorelab train --data digits --net unet --conditional --steps 2000 --batch-size 64 \\
        --lr 1e-3 --out runs/digits-cond
    python examples/guidance_tradeoff.py runs/digits-cond --out docs/images

Accuracy is judged by an independent classifier (a FeatureClassifier trained here on the
training split with its own seed; it never guided sampling). Frechet distance uses its features
against the test split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

from scorelab import diffusion
from scorelab.cli.common import load_run_data, to_unit_interval
from scorelab.cli.sample_cmd import DEFAULT_GUIDANCE, class_labels
from scorelab.metrics import class_accuracy, frechet_distance, train_classifier
from scorelab.training import load_model
from scorelab.viz import draw_grid

WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=".")
    parser.add_argument("-n", type=int, default=1000, help="samples per weight")
    parser.add_argument("--nfe", type=int, default=35)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    model, record = load_model(args.run_dir)
    train, test = load_run_data(record), load_run_data(record, heldout=True)
    judge = train_classifier(train.x, train.labels, generator=torch.Generator().manual_seed(123))
    test_acc = (judge.predict_proba(test.x).argmax(-1) == test.labels).double().mean().item()
    real = judge.features(test.x)
    labels = class_labels("all", train.num_classes, 0, args.n)
    rows = []
    grid = None
    for w in WEIGHTS:
        t0 = time.perf_counter()
        guided = diffusion.ClassifierFreeGuidance(model, w)
        gen = torch.Generator().manual_seed(0)
        res = diffusion.sample(guided, args.n, sampler="heun", nfe=args.nfe, cond=labels,
                               generator=gen, progress=False)  # fmt: skip
        acc = class_accuracy(judge.predict_proba(res.samples), labels).item()
        fd = frechet_distance(judge.features(res.samples), real).item()
        rows.append({"weight": w, "class_accuracy": acc, "frechet_distance": fd,
                     "nfe": res.nfe, "seconds": time.perf_counter() - t0})  # fmt: skip
        print(f"w = {w:4.1f}: class accuracy {acc:.3f}, Frechet distance {fd:7.2f} "
              f"({res.nfe} NFE, {rows[-1]['seconds']:.0f} s)")  # fmt: skip
        if w == DEFAULT_GUIDANCE:
            grid = res.samples
    floor = frechet_distance(judge.features(train.x), real).item()
    print(f"judge's accuracy on the test split {test_acc:.3f}; train-vs-test FD floor {floor:.2f}")
    (out / "guidance-tradeoff.json").write_text(
        json.dumps({"rows": rows, "judge_test_accuracy": test_acc, "fd_floor": floor}, indent=2)
        + "\n"
    )

    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ws = [r["weight"] for r in rows]
    ax.plot(ws, [r["frechet_distance"] for r in rows], "o-", color="C0")
    ax.axhline(floor, color="C0", ls=":", lw=1, label="FD train vs test (floor)")
    ax.set(xlabel="guidance weight w", ylabel="Frechet distance (lower is better)")
    ax.legend(loc="upper left", fontsize=8)
    ax2 = ax.twinx()
    ax2.plot(ws, [r["class_accuracy"] for r in rows], "s--", color="C1")
    ax2.set_ylabel("class accuracy", color="C1")
    ax.set_title("classifier-free guidance on digits: fidelity vs diversity")
    fig.savefig(out / "guidance-tradeoff.png", dpi=110)

    if grid is not None:  # labels cycle 0..9, so the 10-wide grid has one class per column
        fig = Figure(figsize=(5, 5), layout="constrained")
        draw_grid(fig.add_subplot(), to_unit_interval(grid[:100], train.normalization), nrow=10,
                  title=f"one class per column, w = {DEFAULT_GUIDANCE}")  # fmt: skip
        fig.savefig(out / "digits-per-class.png", dpi=110)


if __name__ == "__main__":
    main()
