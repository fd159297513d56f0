"""Entry point of the ``scorelab`` command (also ``python -m scorelab``)."""

from __future__ import annotations

import argparse
import sys

import scorelab
from scorelab.cli import (
    compare_cmd,
    demo_cmd,
    denoise_cmd,
    eval_cmd,
    inpaint_cmd,
    mcmc_cmd,
    quickstart,
    reflow_cmd,
    report_cmd,
    sample_cmd,
    train_cmd,
)


class HelpFormatter(argparse.HelpFormatter):
    """Writes each option's default after its help, "(default 35)" (not for ``None``, ``False``
    or ``[]``, which mean "unset", "off" and "none", nor where the help already names it); a
    description with its own line breaks (a module docstring) is printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default, text = action.default, action.help or ""
        unset = default is None or default is False or default == [] or default is argparse.SUPPRESS
        if unset or "default" in text or not action.option_strings:
            return action.help
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)
        return f"{text} (default {shown.replace('%', '%%')})"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class CommandParser(argparse.ArgumentParser):
    """Every subcommand's parser, with the help formatter above (set here, in one place)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorelab",
        description="Score-based generative modeling: MCMC, score matching, diffusion sampling.",
    )
    parser.add_argument("--version", action="version", version=f"scorelab {scorelab.__version__}")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice)")  # fmt: skip
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=CommandParser)
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
        reflow_cmd,
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
        import torch  # here, not at the top: --help and argument errors stay instant

        torch.set_num_threads(args.threads)
    from scorelab.errors import Interrupted

    try:
        return args.run(args)
    except Interrupted as stop:  # training inside quickstart, compare, ...: saved, then stopped
        import signal

        print(f"\nstopped by {signal.Signals(stop.signum).name} at step {stop.step}: "
              f"{stop.checkpoint} saved", flush=True)  # fmt: skip
        return 128 + stop.signum
