"""``scorelab train``: learn a score model from data (flags, a TOML config, or --resume)."""

from __future__ import annotations

import argparse

from scorelab.cli.common import fail
from scorelab.data import DATASETS
from scorelab.diffusion import OBJECTIVES
from scorelab.nets import NETS, PARAMETERIZATIONS
from scorelab.training import TrainConfig, distributed, resume, train

# flag -> config key; flags left out keep the config file's value or the default
FLAGS = {
    "data": str, "n": int, "objective": str, "net": str, "parameterization": str,
    "steps": int, "batch_size": int, "lr": float, "seed": int, "out": str, "device": str,
    "ema_decay": float, "warmup_steps": int, "grad_clip": float, "checkpoint_every": int,
    "model": str, "conditional": bool, "label_dropout": float, "precision": str, "compile": bool,
}  # fmt: skip


RESUME = "scorelab train --resume"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a score model on a data set or your files",
        description=(
            "Train a denoiser/score model. Data: one of "
            f"{', '.join(DATASETS)}, or a path (.npy/.npz, .csv, MNIST IDX, a folder of "
            "images). The configuration (config.json), CSV log and checkpoints go to --out; "
            "--config FILE.toml gives the settings, flags override them; --resume RUN_DIR "
            "continues a run from its last checkpoint."
        ),
    )
    p.add_argument("--config", help="TOML file with TrainConfig keys")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run")
    p.add_argument("--data", help="data set name or path (default moons)")
    p.add_argument("--n", "--num-examples", dest="n", type=int,
                   help="number of examples (under torchrun write --num-examples: torchrun "
                   "takes --n for its own --nnodes/--nproc-per-node)")  # fmt: skip
    p.add_argument("--objective", choices=[k for k in OBJECTIVES if k != "esm"])
    p.add_argument("--net", choices=list(NETS))
    p.add_argument("--parameterization", choices=list(PARAMETERIZATIONS))
    p.add_argument("--steps", type=int, help="optimizer steps (total, also with --resume)")
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (default runs/train)")
    p.add_argument("--device", help="auto, cpu, cuda, mps")
    p.add_argument("--ema-decay", dest="ema_decay", type=float)
    p.add_argument("--warmup-steps", dest="warmup_steps", type=int)
    p.add_argument("--grad-clip", dest="grad_clip", type=float)
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int)
    p.add_argument("--model", choices=["score", "vae", "gan", "dae"],
                   help="score (default), or a baseline family for comparison")  # fmt: skip
    p.add_argument("--conditional", action="store_true", default=None,
                   help="learn class-conditional and unconditional scores in one net")  # fmt: skip
    p.add_argument("--label-dropout", dest="label_dropout", type=float,
                   help="share of labels dropped to 'no label' (default 0.1)")  # fmt: skip
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                   help="autocast precision (default fp32)")  # fmt: skip
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    try:
        if args.resume:
            res = resume(args.resume, steps=overrides.get("steps"))
        else:
            if args.config:
                cfg = TrainConfig.from_toml(args.config, **overrides)
            else:
                cfg = TrainConfig.from_dict(overrides)
            res = train(cfg)
    except ValueError as err:
        fail(err)
    except KeyboardInterrupt:
        out = args.resume or overrides.get("out", TrainConfig.out)
        if distributed.is_main():
            print(f"\ninterrupted: a checkpoint was saved; continue with {RESUME} {out}")
        return 130
    if not distributed.is_main():  # under torchrun rank 0 reports for every rank
        return 0
    tail = res.losses[-min(100, len(res.losses)) :] or [float("nan")]
    print(f"trained {res.run_dir} to step {res.step}: mean loss of the last {len(tail)} steps "
          f"{sum(tail) / len(tail):.4f}")  # fmt: skip
    print(f"sample from it with: scorelab sample {res.run_dir}")
    return 0
