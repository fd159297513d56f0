"""``scorelab demo``: run a demonstration (or all of them), write its pictures and claims."""

from __future__ import annotations

import argparse
from pathlib import Path

from scorelab.cli.common import add_overwrite, fail, out_dir, write_run_record
from scorelab.cli.names import DEMOS


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``scorelab demo [NAME ...] [--list] [--all] [--out DIR] [--quick] [--seed N]``."""
    p = sub.add_parser(
        "demo",
        help="run a demonstration: pictures and the measured claim behind them",
        description=(
            "Run a demonstration: it writes pictures (PNG, and an animated GIF where motion is "
            "the point) and result.json with the numbers behind its claim into OUT/NAME/. "
            f"NAME is one of: {', '.join(DEMOS)}. --all runs every demo and writes the gallery "
            "OUT/index.html."
        ),
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="demo(s) to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the demos, one line each")
    p.add_argument("--all", action="store_true", help="run every demo and write index.html")
    p.add_argument("--out", default="scorelab-out/demos", help="output folder")
    add_overwrite(p)
    p.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List the demos, or run the named ones (or all) and print each measured claim."""
    from scorelab.demos import DEMOS, check_name, run_all, run_demo

    if args.list:
        width = max(len(name) for name in DEMOS)
        for name, demo in DEMOS.items():
            print(f"{name:<{width}}  {demo.summary}")
        return 0
    if args.all and args.names:
        fail("give demo names or --all, not both")
    if not args.all and not args.names:
        fail(f"name a demo (one of: {', '.join(DEMOS)}), or pass --all or --list")
    for name in args.names:
        try:
            check_name(name)
        except ValueError as err:
            fail(err)
    folder = Path(args.out)
    for name in DEMOS if args.all else args.names:  # each demo's folder holds one run
        out_dir(folder / name, "demo", args.overwrite)
    if args.all or len(args.names) > 1:
        results, index = run_all(
            folder, names=None if args.all else args.names, quick=args.quick, seed=args.seed
        )
    else:
        results, index = [run_demo(args.names[0], folder, quick=args.quick, seed=args.seed)], None
    for res in results:
        write_run_record(folder / res.name, "demo", vars(args) | {"run": None})
        print(f"{res.name} ({res.seconds:.1f} s): {res.claim}")
        print("  wrote " + ", ".join(str(p) for p in res.paths))
    if index is not None:
        total = sum(r.seconds for r in results)
        print(f"gallery: {index} ({len(results)} demos, {total:.0f} s)")
    return 0
