"""Help and argument errors are instant: the parsers import no torch (nor numpy, matplotlib);
the torch-free name lists they use equal the library's registries; every default is shown."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import pytest

from scorelab.cli import names
from scorelab.cli.main import HelpFormatter, build_parser

HEAVY = ("torch", "numpy", "matplotlib")

# Each argv is run by the real entry point in one fresh interpreter; after each, the heavy
# modules loaded so far are recorded (a module imported once stays in sys.modules).
PROBE = f"""
import json, sys
HEAVY = {HEAVY!r}
from scorelab.cli.main import main
report = []
for argv in json.loads(sys.argv[1]):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    loaded = [m for m in HEAVY if m in sys.modules]
    report.append({{"argv": argv, "code": code if isinstance(code, int) else 1, "heavy": loaded}})
print(json.dumps(report))
"""


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_help_and_argument_errors_import_no_torch():
    helps = [["--help"]] + [[cmd, "--help"] for cmd in _subcommands()]
    errors = [
        ["mcmc", "banana", "--kernel", "nope"],  # a bad choice
        ["sample"],  # a missing argument
        ["train", "--steps", "many"],  # a bad type
        ["nope"],  # an unknown command
    ]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(helps + errors)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["code"] for r in report] == [0] * len(helps) + [2] * len(errors), out.stderr[-3000:]
    for r in report:
        assert not r["heavy"], (
            f"scorelab {' '.join(r['argv'])} imported {', '.join(r['heavy'])}: keep add_parser "
            "and the cli modules' top-level imports free of them (import inside run)"
        )


def _registries():
    from scorelab import data, densities, diffusion, mcmc, nets
    from scorelab.demos import DEMOS
    from scorelab.training.config import LR_SCHEDULES

    return {
        "DENSITIES": densities.NAMED,
        "KERNELS": mcmc.KERNELS,
        "DATASETS": data.DATASETS,
        "OBJECTIVES": diffusion.OBJECTIVES,
        "SAMPLERS": diffusion.SAMPLERS,
        "PROCESSES": diffusion.PROCESSES,
        "INPAINT_METHODS": diffusion.INPAINT_METHODS,
        "NETS": nets.NETS,
        "PARAMETERIZATIONS": nets.PARAMETERIZATIONS,
        "DEMOS": DEMOS,
        "LR_SCHEDULES": LR_SCHEDULES,
    }


def test_cli_names_equal_the_library_registries():
    registries = _registries()
    listed = {k: v for k, v in vars(names).items() if k.isupper()}
    assert set(listed) == set(registries)
    wrong = [
        f"{key} = {tuple(registry)!r}"
        for key, registry in registries.items()
        if listed[key] != tuple(registry)
    ]
    assert not wrong, (
        "scorelab/cli/names.py differs from the library (the parsers cannot import it without "
        "torch); write there: " + "; ".join(wrong)
    )


def _shown_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return HelpFormatter(parser.prog)._get_help_string(action) or ""


def test_every_option_with_a_default_shows_it():
    for cmd, parser in _subcommands().items():
        for action in parser._actions:
            default = action.default
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            if default is None or default is False or default == []:
                continue
            shown = _shown_help(parser, action)
            assert action.help and "default" in shown, (
                f"scorelab {cmd} {action.option_strings[0]} has default {default!r} but its "
                "help does not show it: give it a help string"
            )


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        ("sample", ["sampler (default unipc", "(default 20)", "number of samples (default 1000)"]),
        (
            "mcmc",
            ["tuned across many chains (default hmc)", "chains (default 16)", "(default 2000)"],
        ),
        ("denoise", ["(default 0.1 0.2 0.5)"]),
        ("demo", ["random seed (default 0)"]),
    ],
)
def test_subcommand_help_text_shows_defaults(cmd, expected):
    text = " ".join(_subcommands()[cmd].format_help().split())  # undo line wrapping
    for phrase in expected:
        assert phrase in text


def test_train_help_states_the_config_defaults():
    """``train`` flags default to None (a --config file's value wins), so their help states
    TrainConfig's default in words: it must be the real one."""
    from scorelab.cli.train_cmd import FLAGS
    from scorelab.training import TrainConfig

    parser = _subcommands()["train"]
    for action in parser._actions:
        if action.dest not in FLAGS or isinstance(getattr(TrainConfig, action.dest), bool):
            continue
        default = getattr(TrainConfig, action.dest)
        if default is None:
            continue
        match = re.search(r"default:? ([^;)]+)\)", action.help or "")
        if action.dest == "model":  # "score (default), or a baseline family"
            assert (action.help or "").startswith(f"{default} (default)")
            continue
        assert match and match.group(1) == str(default), (
            f"scorelab train {action.option_strings[0]}: help says {action.help!r}; "
            f"TrainConfig.{action.dest} defaults to {default!r}"
        )
