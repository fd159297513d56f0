"""``scorelab eval`` and ``scorelab report`` end to end on tiny runs; the report is rendered in
headless Chromium and checked for what it shows."""

from __future__ import annotations

import html
import json
import math
import re

import numpy as np
import pytest
import torch

from scorelab.cli.main import main
from scorelab.data import load


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("moons") / "run"
    assert main(["train", "--data", "moons", "--n", "2000", "--steps", "40", "--batch-size", "64",
                 "--out", str(out)]) == 0  # fmt: skip
    assert main(["sample", str(out), "-n", "300", "--nfe", "9"]) == 0
    return out


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    cfg = out.parent / "digits.toml"
    cfg.write_text('data = "digits"\nnet = "unet"\nsteps = 10\nbatch_size = 32\n'
                   '[net_kwargs]\nbase_channels = 8\nnum_res_blocks = 1\n')  # fmt: skip
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 0
    return out


def test_eval_of_samples_writes_metrics_and_the_data_floor(moons_run, capsys):
    assert main(["eval", str(moons_run / "samples.npz")]) == 0
    text = capsys.readouterr().out
    assert "sliced_wasserstein" in text and "memorization_ratio" in text
    result = json.loads((moons_run / "samples.eval.json").read_text())
    assert result["n_samples"] == 300 and result["reference"].startswith("moons (test")
    for name in ("sliced_wasserstein", "mmd", "energy_distance", "kl_knn", "js_knn"):
        assert math.isfinite(result["metrics"][name]) and name in result["floor"]
    assert result["metrics"]["memorization_ratio"] > 0


def test_eval_tells_fresh_data_from_shifted_data(tmp_path, capsys):
    """Data-unit arrays with no run record, judged against a fresh draw of moons: a second
    fresh draw scores like the floor, the same draw shifted by 1 in x scores far worse (its
    sliced W2 is at least ~1 / sqrt(2) times the shift, averaged over directions)."""
    gen = torch.Generator().manual_seed(5)
    fresh = load("moons", n=2000, generator=gen)
    raw = fresh.decode(fresh.x).numpy()
    np.save(tmp_path / "fresh.npy", raw)
    np.save(tmp_path / "shifted.npy", raw + np.array([1.0, 0.0], dtype=np.float32))
    sw = {}
    for name in ("fresh", "shifted"):
        assert main(["eval", str(tmp_path / f"{name}.npy"), "--reference", "moons"]) == 0
        sw[name] = json.loads((tmp_path / f"{name}.eval.json").read_text())["metrics"]
    capsys.readouterr()
    assert sw["fresh"]["sliced_wasserstein"] < 0.1 < 0.5 < sw["shifted"]["sliced_wasserstein"]
    assert sw["fresh"]["energy_distance"] < 0.01 < sw["shifted"]["energy_distance"]


def test_eval_nll_gives_bits_per_dim_for_integer_pixels(digits_run, capsys):
    assert main(["eval", str(digits_run), "--nll", "test", "-n", "4"]) == 0
    assert "bits/dim" in capsys.readouterr().out
    lik = json.loads((digits_run / "eval.json").read_text())["likelihood"]
    assert lik["n"] == 4 and lik["bin_width"] == pytest.approx(1 / 8)  # pixels 0..16 -> [-1, 1]
    # the two are one number in two units: bpd = -(log p + d log w) / (d ln 2), d = 64
    expect = -(lik["log_likelihood_nats"] + 64 * math.log(1 / 8)) / (64 * math.log(2))
    assert lik["bits_per_dim"] == pytest.approx(expect, rel=1e-6)  # float32 model
    assert lik["bits_per_dim"] > 0


def test_eval_errors_name_the_fix(moons_run, tmp_path):
    with pytest.raises(SystemExit, match="needs --nll"):
        main(["eval", str(moons_run)])
    np.save(tmp_path / "x.npy", np.zeros((10, 2), dtype=np.float32))
    with pytest.raises(SystemExit, match="no run record; pass --reference"):
        main(["eval", str(tmp_path / "x.npy")])
    with pytest.raises(SystemExit, match="neither a built-in data set"):
        main(["eval", str(tmp_path / "x.npy"), "--reference", "no-such-set"])
    with pytest.raises(SystemExit, match="shaped"):
        main(["eval", str(tmp_path / "x.npy"), "--reference", "digits"])


def _text(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_report_renders_in_a_browser_with_every_section(digits_run, tmp_path):
    from _support.browser import images, render_dom, screenshot

    assert main(["eval", str(digits_run), "--nll", "test", "-n", "2"]) == 0
    assert main(["report", str(digits_run), "-n", "64", "--nfe", "5"]) == 0
    html = digits_run / "report.html"
    assert "http://" not in html.read_text() and "https://" not in html.read_text()
    dom = render_dom(html)
    text = _text(dom)
    for heading in ("Run", "Training", "Samples", "Metrics", "Likelihood", "Configuration"):
        assert f"<h2>{heading}</h2>" in dom
    for shown in ("frechet_distance", "memorization_ratio", "bits_per_dim", "objective", "unet"):
        assert shown in text, shown
    shown_images = images(dom)
    assert len(shown_images) == 2  # loss curve and sample grid
    assert all(width > 100 and not broken for width, broken in shown_images)
    assert screenshot(html, tmp_path / "report.png").stat().st_size > 20_000


def test_report_of_a_2d_run_without_likelihood(moons_run):
    from _support.browser import images, render_dom

    assert main(["report", str(moons_run)]) == 0
    dom = render_dom(moons_run / "report.html")
    assert "Not computed" in dom and "scorelab eval" in dom
    assert "sliced_wasserstein" in dom
    assert [broken for _, broken in images(dom)] == [False, False]


def test_report_of_a_baseline_run_names_its_family(tmp_path):
    run = tmp_path / "vae"
    assert main(["train", "--model", "vae", "--data", "moons", "--n", "500", "--steps", "10",
                 "--batch-size", "32", "--out", str(run)]) == 0  # fmt: skip
    assert main(["report", str(run), "-n", "100"]) == 0
    text = html.unescape(_text((run / "report.html").read_text()))
    assert "vae: mlp" in text and "the VAE's own loss" in text
    assert "parameterization" not in text.split("Configuration")[0]  # no score-model wording
    assert "sliced_wasserstein" in text
