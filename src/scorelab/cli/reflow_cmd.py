"""``scorelab reflow RUN``: straighten a trained run's flow (Liu et al. 2023) and compare the two
at 1, 2, 4 and 8 Euler steps."""

from __future__ import annotations

import argparse
import json
import signal
from pathlib import Path

from scorelab.cli.common import add_device, add_overwrite, fail, load_run_data, out_dir
from scorelab.cli.names import PROCESSES

COMPARE_NFE = (1, 2, 4, 8)
# scorelab.training.reflow.ODE_SAMPLERS (torch-free copy; tests/cli/test_reflow_cli.py holds
# them equal): the deterministic samplers, which map each noise to one sample
ODE_SAMPLERS = ("euler", "heun", "rk45", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reflow",
        help="rectify a trained run: train a straighter flow on its own noise-sample pairs",
        description=(
            "Reflow (Liu et al. 2023): draw noise z, map it to samples with RUN's ODE, and train "
            "a new flow-matching run on the (sample, noise) pairs, whose paths are straighter, "
            "so few Euler steps suffice. RUN is a run folder of scorelab train (any objective; "
            "a flow-matching run is fine-tuned from its own weights). The new run goes to "
            "--out (pairs in reflow_pairs.safetensors, settings in reflow.json); it continues "
            "with scorelab train --resume OUT. Both models are then compared by sliced "
            "Wasserstein distance to the data at 1, 2, 4 and 8 Euler steps on the flow levels "
            "t_i = 0.999 (1 - i/N)."
        ),
    )
    p.add_argument("run_dir", help="the trained run folder to rectify")
    p.add_argument("--out", default=None, help="the new run folder (default RUN_DIR-reflow)")
    add_overwrite(p)
    p.add_argument("--pairs", type=int, default=10_000, help="noise-sample pairs to draw")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps of the new run (default: the teacher's)")  # fmt: skip
    p.add_argument("--sampler", default="dpmpp_2m", choices=ODE_SAMPLERS,
                   help="deterministic ODE sampler that draws the pairs")  # fmt: skip
    p.add_argument("--nfe", type=int, default=35, help="evaluations per pair")
    p.add_argument("--process", default="flow", choices=PROCESSES,
                   help="noise levels the pairs are drawn on")  # fmt: skip
    p.add_argument("--init", default="auto", choices=["auto", "teacher", "scratch"],
                   help="start from the teacher's weights (needs a flow-matching teacher), "
                   "from scratch, or auto: the teacher's where possible")  # fmt: skip
    p.add_argument("--time-sampling", dest="time_sampling", default=None,
                   choices=["uniform", "logit_normal"],
                   help="flow-matching time distribution (default: the teacher's, else "
                   "uniform)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="seed of pairs and training "
                   "(default: the teacher's)")  # fmt: skip
    p.add_argument(
        "--eval-n",
        dest="eval_n",
        type=int,
        default=1000,
        help="samples per model and step count in the comparison (0: skip)",
    )
    add_device(p)
    p.set_defaults(run=run)


def compare(teacher, student, data, n: int, seed: int = 0) -> list[dict]:
    """Sliced Wasserstein distance to ``data`` of Euler samples on Liu et al.'s flow levels
    ``Flow(spacing="linspace")``, teacher against student, at ``COMPARE_NFE`` steps (same
    noise for both)."""
    import torch

    from scorelab import diffusion
    from scorelab.metrics import sliced_wasserstein

    levels = diffusion.Flow(spacing="linspace")  # t_max (1 - i / N): no step spent near t = 0
    ref = data.x[torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]]
    rows = []
    for nfe in COMPARE_NFE:
        row = {"nfe": nfe}
        for name, model in (("teacher", teacher), ("reflow", student)):
            gen = torch.Generator().manual_seed(seed + 1)
            x = diffusion.sample(model, n, sampler="euler", nfe=nfe, process=levels, generator=gen)
            x = x.samples
            sw = sliced_wasserstein(x, ref, generator=gen.manual_seed(seed))
            row[name] = round(float(sw), 5)
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    from scorelab.errors import Interrupted
    from scorelab.training import load_model, read_run_config
    from scorelab.training.reflow import RECORD_FILE, reflow

    out = Path(args.out) if args.out else Path(str(Path(args.run_dir)).rstrip("/") + "-reflow")
    if args.eval_n < 0:
        fail(f"--eval-n must be >= 0; got {args.eval_n}")
    try:
        read_run_config(args.run_dir)  # a bad RUN_DIR fails before --out is claimed
    except ValueError as err:
        fail(err)
    out_dir(out, "reflow", args.overwrite, resume=True, record=False)
    try:
        res = reflow(args.run_dir, out, pairs=args.pairs, steps=args.steps, sampler=args.sampler,
                     nfe=args.nfe, process=args.process, init=args.init,
                     time_sampling=args.time_sampling, seed=args.seed, device=args.device,
                     overwrite=True)  # fmt: skip
    except ValueError as err:
        fail(err)
    except Interrupted as stop:
        print(f"\nstopped by {signal.Signals(stop.signum).name} at step {stop.step}; checkpoint "
              f"saved; continue with scorelab train --resume {out}", flush=True)  # fmt: skip
        return 128 + stop.signum
    print(f"reflow of {args.run_dir} trained {res.run_dir} to step {res.step}")
    if args.eval_n:
        teacher, record = load_model(args.run_dir, device=args.device)
        rows = compare(teacher, res.model, load_run_data(record), args.eval_n)
        print("sliced Wasserstein to the data, Euler on the flow levels:")
        print(f"{'NFE':>5} {'teacher':>10} {'reflow':>10}")
        for r in rows:
            print(f"{r['nfe']:>5} {r['teacher']:>10.4f} {r['reflow']:>10.4f}")
        path = out / RECORD_FILE
        path.write_text(json.dumps({**json.loads(path.read_text()), "compare": rows}, indent=2))
    print(f"sample from it with: scorelab sample {out} --process flow --sampler euler")
    return 0
