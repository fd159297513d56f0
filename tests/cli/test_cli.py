"""The command line: --help on every subcommand, --version, mcmc and quickstart end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import scorelab
from scorelab.cli.main import build_parser, main

SUBCOMMANDS = [
    "quickstart",
    "train",
    "sample",
    "denoise",
    "mcmc",
    "eval",
    "report",
    "inpaint",
    "demo",
    "compare",
    "reflow",
]


def test_version_and_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "scorelab", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"scorelab {scorelab.__version__}"


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([cmd, "--help"])
    assert exit_info.value.code == 0
    assert "usage: scorelab " + cmd in capsys.readouterr().out


def test_parser_lists_all_subcommands():
    help_text = build_parser().format_help()
    assert all(cmd in help_text for cmd in SUBCOMMANDS)


def test_mcmc_named_target(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["mcmc", "gaussian", "--param", "dim=3", "--param", "condition=10", "--chains", "4",
            "--steps", "200", "--warmup", "100", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "ess_bulk" in text and "x[2]" in text
    with np.load(out / "samples.npz") as f:
        assert f["samples"].shape == (4, 200, 3)
    assert (out / "mcmc.png").stat().st_size > 10_000
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["seed"] == 0 and record["versions"]["scorelab"] == scorelab.__version__


@pytest.mark.parametrize(
    ("flags", "expected"),
    [([], 0.99), (["--kernel", "nuts"], 0.99), (["--target-accept", "0.8"], 0.8),
     (["--kernel", "mala"], None)],
)  # fmt: skip
def test_mcmc_target_accept_default(flags, expected, tmp_path, monkeypatch):
    """The command tunes HMC and NUTS to 0.99 unless told otherwise (the banana diverges at
    Stan's 0.8, the Python default, and in some seeds at 0.95); other kernels keep their own
    default (None)."""
    from scorelab import mcmc

    seen = {}

    def fake_sample(*args, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(mcmc, "sample", fake_sample)
    with pytest.raises(SystemExit):
        main(["mcmc", "banana", "--out", str(tmp_path / "m"), *flags])
    assert seen["target_accept"] == expected


def test_mcmc_user_function(tmp_path, monkeypatch, capsys):
    (tmp_path / "mymodel.py").write_text(
        "def log_p(x):\n    return -0.5 * (x ** 2).sum(-1) - (x ** 4).sum(-1)\n"
    )
    monkeypatch.chdir(tmp_path)
    args = ["mcmc", "mymodel:log_p", "--dim", "1", "--kernel", "rwm", "--chains", "4",
            "--steps", "100", "--warmup", "50", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(args) == 0
    assert "rwm: 4 chains x 100 draws" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mcmc", "nope"], "unknown density 'nope'"),
        (["mcmc", "banana", "--param", "dim"], "--param expects KEY=VALUE"),
        (["mcmc", "mod:fn"], "needs --dim"),
        (["mcmc", "gaussian", "--chains", "0"], "chains must be an int >= 1"),
    ],
)
def test_mcmc_bad_input(args, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        main([*args, "--out", str(tmp_path)])


def test_quickstart_quick(tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    assert main(["quickstart", "--quick", "--out", str(tmp_path)]) == 0
    assert torch.get_num_threads() == threads  # the quickstart's one thread is set back
    text = capsys.readouterr().out
    assert "check against the exact moments" in text and "memorization ratio" in text
    assert "Tweedie denoising at sigma 0.5" in text
    for name in ("quickstart.png", "mcmc.png", "report.txt", "run.json", "metrics.json"):
        assert (tmp_path / name).exists()
    assert (tmp_path / "digits" / "config.json").exists()
    # every printed number is in metrics.json, which run.json names
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "metrics.json" in json.loads((tmp_path / "run.json").read_text())["outputs"]
    report = (tmp_path / "report.txt").read_text()
    moons, digits = metrics["moons"], metrics["digits"]
    assert f"data-vs-data floor {moons['floor']['sliced_wasserstein']:.4f}" in report
    assert f"memorization ratio {digits['metrics']['memorization_ratio']:.3f}" in report
    for check in metrics["mcmc"]["check"]:
        assert f"{check['moment']}  exact {check['exact']:8.4f}" in report
    test_bpd = digits["bits_per_dim"]["test"]["bits_per_dim"]
    assert f"bits/dim on 8 test examples {test_bpd:.3f}" in report
    psnr = digits["denoising_psnr"][1]
    assert (
        f"sigma 0.5: PSNR {psnr['psnr_noisy_db']:.2f} -> {psnr['psnr_denoised_db']:.2f}" in report
    )
    assert f"total time {metrics['total_s']:.0f} s" in report
    # without --threads the quickstart runs on QUICKSTART_THREADS (1) and says so
    assert metrics["torch_threads"] == 1 and "1 torch thread(s)" in report
    # scorelab report finds the bits/dim the quickstart computed
    assert main(["report", str(tmp_path / "digits"), "-n", "16", "--nfe", "3"]) == 0
    page = (tmp_path / "digits" / "report.html").read_text()
    assert "Not computed" not in page
    assert f'<td>bits_per_dim</td><td class="num">{test_bpd:.4g}</td>' in page
    # the folder now holds a run: a second quickstart into it is refused, naming the fixes
    with pytest.raises(SystemExit, match="pass --overwrite to replace it"):
        main(["quickstart", "--quick", "--out", str(tmp_path)])


def test_train_sample_denoise_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "digits", "--net", "unet", "--steps", "3", "--batch-size",
                 "8", "--out", str(run)]) == 0  # fmt: skip
    assert main(["sample", str(run), "-n", "4", "--nfe", "3", "--sampler", "euler"]) == 0
    with np.load(run / "samples.npz") as f:
        assert f["samples"].shape == (4, 1, 8, 8)
        # saved in the data's units: digits map [-1, 1] <- [0, 16]
        np.testing.assert_allclose(f["samples"], (f["model_units"] + 1) * 8, rtol=1e-5, atol=1e-5)
        assert json.loads(str(f["record"]))["sampler"] == "euler"
    assert (run / "samples.png").exists()
    assert main(["denoise", str(run), "--sigma", "0.5", "-n", "20"]) == 0
    assert "PSNR" in capsys.readouterr().out and (run / "denoise.png").exists()
    # resume to a larger step count
    assert main(["train", "--resume", str(run), "--steps", "5"]) == 0
    assert "to step 5" in capsys.readouterr().out


def test_train_from_toml_with_overrides(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'data = "ring"\nn = 500\nsteps = 4\nbatch_size = 16\n[net_kwargs]\nhidden = 16\n'
    )
    assert main(["train", "--config", str(cfg), "--steps", "2", "--out", str(tmp_path / "r")]) == 0
    record = json.loads((tmp_path / "r" / "config.json").read_text())
    assert record["train"]["steps"] == 2 and record["train"]["net_kwargs"] == {"hidden": 16}
    cfg.write_text("stepz = 3\n")
    with pytest.raises(SystemExit, match="unknown config key"):
        main(["train", "--config", str(cfg), "--out", str(tmp_path / "r2")])


def test_train_on_a_folder_of_images_of_mixed_sizes(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, size in (("cats", (10, 12)), ("dogs", (16, 16))):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / label / f"{i}.png")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'data = "{tmp_path / "imgs"}"\nnet = "unet"\nsteps = 2\nbatch_size = 4\n'
        "data_kwargs = { size = [8, 8] }\n"
        "net_kwargs = { base_channels = 8, channel_mult = [1, 2], num_res_blocks = 1 }\n"
    )
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["data"]["event_shape"] == [3, 8, 8] and record["data"]["num_classes"] == 2
    assert (
        main(["sample", str(tmp_path / "run"), "-n", "2", "--nfe", "2", "--sampler", "euler"]) == 0
    )


def test_quickstart_keeps_the_threads_given(tmp_path):
    """``--threads N`` before the command wins over the quickstart's one thread (and the
    command's own setting is not undone; the process's count is restored here)."""
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["--threads", "2", "quickstart", "--quick", "--out", str(tmp_path)]) == 0
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        assert metrics["torch_threads"] == 2
    finally:
        torch.set_num_threads(before)
