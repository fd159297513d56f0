"""Entry point of the ``scorelab`` command (also ``python -m scorelab``)."""

from __future__ import annotations

import argparse
import sys

import torch

import scorelab
from scorelab.cli import (
    compare_cmd,
    demo_cmd,
    denoise_cmd,
    eval_cmd,
    inpaint_cmd,
    mcmc_cmd,
    quickstart,
    report_cmd,
    sample_cmd,
    train_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorelab",
        description="Score-based generative modeling: MCMC, score matching, diffusion sampling.",
    )
    parser.add_argument("--version", action="version", version=f"scorelab {scorelab.__version__}")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice)")  # fmt: skip
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in (
        quickstart,
        train_cmd,
        sample_cmd,
        denoise_cmd,
        mcmc_cmd,
        eval_cmd,
        report_cmd,
        inpaint_cmd,
        demo_cmd,
        compare_cmd,
    ):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"error: --threads must be >= 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    return args.run(args)
