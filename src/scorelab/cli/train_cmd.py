"""``scorelab train``: learn a score model from data (flags, a TOML config, or --resume)."""

from __future__ import annotations

import argparse
import signal

from scorelab.cli.common import add_data_key, add_overwrite, fail, out_dir, parse_data_range
from scorelab.cli.names import DATASETS, LR_SCHEDULES, NETS, OBJECTIVES, PARAMETERIZATIONS

# flag -> config key; flags left out keep the config file's value or the default
FLAGS = {
    "data": str, "n": int, "objective": str, "net": str, "parameterization": str,
    "steps": int, "batch_size": int, "lr": float, "lr_schedule": str, "seed": int, "out": str,
    "device": str,
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
    add_data_key(p, "--data")
    p.add_argument("--data-range", dest="data_range", metavar="LO,HI", type=parse_data_range,
                   help="images: the pixel range mapped to [-1, 1] (default from the data: "
                   "0,255 for 8-bit values, 0,1 or -1,1 for floats within them, else "
                   "min,max)")  # fmt: skip
    p.add_argument("--n", "--num-examples", dest="n", type=int,
                   help="number of examples (under torchrun write --num-examples: torchrun "
                   "takes --n for its own --nnodes/--nproc-per-node)")  # fmt: skip
    p.add_argument("--objective", choices=[k for k in OBJECTIVES if k != "esm"],
                   help="training objective (default edm)")  # fmt: skip
    p.add_argument("--time-sampling", dest="time_sampling", choices=["uniform", "logit_normal"],
                   help="flow_matching: time distribution, uniform or logit-normal (SD3) "
                   "(default uniform)")  # fmt: skip
    p.add_argument("--coupling", choices=["independent", "ot"],
                   help="flow_matching: noise-data pairing, independent or minibatch optimal "
                   "transport (default independent)")  # fmt: skip
    p.add_argument("--net", choices=NETS, help="network: mlp for vectors, unet for images "
                   "(default mlp)")  # fmt: skip
    p.add_argument("--parameterization", choices=PARAMETERIZATIONS,
                   help="what the network predicts; --objective flow_matching defaults to "
                   "velocity (default edm)")  # fmt: skip
    p.add_argument("--steps", type=int,
                   help="optimizer steps (total, also with --resume; default 2000)")  # fmt: skip
    p.add_argument("--batch-size", dest="batch_size", type=int, help="examples per step "
                   "(default 256)")  # fmt: skip
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.002)")
    p.add_argument("--lr-schedule", dest="lr_schedule", choices=LR_SCHEDULES,
                   help="learning rate after the warm-up: constant, or a cosine or linear decay "
                   "to 0 at --steps (default constant)")  # fmt: skip
    p.add_argument("--seed", type=int, help="seed of data, initialization and noise (default 0)")
    p.add_argument("--out", help="run folder, empty or new (default scorelab-out/train)")
    add_overwrite(p)
    p.add_argument("--device", help="auto, cpu, cuda, mps (default auto)")
    p.add_argument("--ema-decay", dest="ema_decay", type=float,
                   help="decay of the weights' moving average (default 0.999)")  # fmt: skip
    p.add_argument("--warmup-steps", dest="warmup_steps", type=int,
                   help="learning-rate warm-up steps (default 100)")  # fmt: skip
    p.add_argument("--grad-clip", dest="grad_clip", type=float,
                   help="max gradient norm, 0 for none (default 1.0)")  # fmt: skip
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int,
                   help="steps between checkpoints (default 1000)")  # fmt: skip
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


def _data_options(args: argparse.Namespace) -> dict:
    """``--data-key`` and ``--data-range`` as loader options (``data_kwargs``), which the run
    record keeps so that every later command reads the data the same way."""
    if args.resume and (args.data_key or args.data_range):
        fail("--data-key and --data-range apply to a new run; --resume reads the data as the "
             "run recorded it")  # fmt: skip
    if args.data_key is not None and args.data in DATASETS:
        fail(f"--data-key picks an array of an .npz file; --data {args.data} is a built-in set")
    out: dict = {}
    if args.data_key is not None:
        out["key"] = args.data_key
    if args.data_range is not None:
        out["data_range"] = list(args.data_range)
    return out


def _flow_options(args: argparse.Namespace, overrides: dict, file_values: dict) -> dict:
    """``--time-sampling``/``--coupling`` as ``objective_kwargs`` of ``flow_matching``, whose
    default parameterization is ``velocity`` (unless a flag or the --config file's values,
    ``file_values``, name one)."""
    given = {k: getattr(args, k) for k in ("time_sampling", "coupling")
             if getattr(args, k) is not None}  # fmt: skip
    if overrides.get("objective", file_values.get("objective")) != "flow_matching":
        if given:
            fail("--time-sampling and --coupling apply to --objective flow_matching only")
        return {}
    if "parameterization" not in overrides and "parameterization" not in file_values:
        overrides["parameterization"] = "velocity"
    return given


def run(args: argparse.Namespace) -> int:
    from scorelab.errors import Interrupted
    from scorelab.training import TrainConfig, distributed, resume, train
    from scorelab.training.config import read_toml

    overrides = {k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None}
    if args.resume and args.overwrite:
        fail("--overwrite starts a new run in --out; --resume continues one: give only one")
    try:
        if args.resume:
            if args.time_sampling or args.coupling:
                fail("--time-sampling and --coupling apply to a new run; --resume keeps the run's")
            from scorelab.training.reflow import is_reflow_run, resume_reflow

            go_on = resume_reflow if is_reflow_run(args.resume) else resume  # reflow: its pairs
            res = go_on(args.resume, steps=overrides.get("steps"))
        else:
            file_values = read_toml(args.config) if args.config else {}
            flow_kwargs = _flow_options(args, overrides, file_values)
            cfg = TrainConfig.from_dict({**file_values, **overrides})
            cfg.data_kwargs = {**cfg.data_kwargs, **_data_options(args)}
            cfg.objective_kwargs = {**cfg.objective_kwargs, **flow_kwargs}
            if distributed.is_main():  # one run per folder: refuse one that holds files
                out_dir(cfg.out, "train", args.overwrite, resume=True, record=False)
            res = train(cfg, overwrite=args.overwrite)
    except ValueError as err:
        fail(err)
    except Interrupted as stop:  # SIGINT, SIGTERM, SIGUSR1: saved at a step boundary
        out = args.resume or cfg.out
        if distributed.is_main():
            print(f"\nstopped by {signal.Signals(stop.signum).name} at step {stop.step}; "
                  f"checkpoint saved; continue with {RESUME} {out}", flush=True)  # fmt: skip
        return 128 + stop.signum
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        if distributed.is_main():
            print(f"\ninterrupted; continue from the last checkpoint with {RESUME} "
                  f"{args.resume or overrides.get('out', TrainConfig.out)}")  # fmt: skip
        return 130
    if not distributed.is_main():  # under torchrun rank 0 reports for every rank
        return 0
    tail = res.losses[-min(100, len(res.losses)) :] or [float("nan")]
    print(f"trained {res.run_dir} to step {res.step}: mean loss of the last {len(tail)} steps "
          f"{sum(tail) / len(tail):.4f}")  # fmt: skip
    if res.data.range_source is not None:  # images: say which range maps onto [-1, 1]
        lo, hi = res.data.normalization.lo[0], res.data.normalization.hi[0]
        source = "--data-range" if res.data.range_source == "given" else res.data.range_source
        hint = "; set it with --data-range LO,HI" if "min..max" in source else ""
        print(f"data range {lo:g}..{hi:g} mapped to [-1, 1] (from {source}; recorded in "
              f"{res.run_dir}/config.json){hint}")  # fmt: skip
    print(f"sample from it with: scorelab sample {res.run_dir}")
    return 0
