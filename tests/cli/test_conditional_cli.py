"""``scorelab train --conditional``, ``sample --class/--guidance`` and ``inpaint`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scorelab.cli.main import main

TINY_UNET = "[net_kwargs]\nbase_channels = 8\nnum_res_blocks = 1\n"


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cond") / "run"
    cfg = out.parent / "c.toml"
    cfg.write_text('data = "digits"\nnet = "unet"\nsteps = 6\nbatch_size = 16\n' + TINY_UNET)
    assert main(["train", "--config", str(cfg), "--conditional", "--out", str(out)]) == 0
    return out


def test_conditional_run_records_classes_and_samples_a_class(cond_run):
    record = json.loads((cond_run / "config.json").read_text())
    assert record["train"]["conditional"] and record["model"]["net_kwargs"]["num_classes"] == 10
    assert main(["sample", str(cond_run), "--class", "3", "-n", "6", "--nfe", "5",
                 "--out", str(cond_run / "three.npz")]) == 0  # fmt: skip
    with np.load(cond_run / "three.npz") as f:
        assert (f["labels"] == 3).all() and f["samples"].shape == (6, 1, 8, 8)
        provenance = json.loads(str(f["record"]))
    assert provenance["guidance"] == 1.5 and provenance["guidance_kind"] == "free"


def test_class_all_cycles_labels_and_eval_reports_class_accuracy(cond_run, capsys):
    out = cond_run / "all.npz"
    assert main(["sample", str(cond_run), "--class", "all", "-n", "20", "--nfe", "5",
                 "--guidance", "3", "--out", str(out)]) == 0  # fmt: skip
    with np.load(out) as f:
        assert f["labels"].tolist() == [i % 10 for i in range(20)]
    assert main(["eval", str(out)]) == 0
    assert "class_accuracy" in json.loads(out.with_suffix(".eval.json").read_text())["metrics"]
    capsys.readouterr()


def test_classifier_guidance_from_the_cli_on_an_unconditional_run(tmp_path, capsys):
    run = tmp_path / "plain"
    cfg = tmp_path / "p.toml"
    cfg.write_text('data = "digits"\nnet = "unet"\nsteps = 4\nbatch_size = 16\n' + TINY_UNET)
    assert main(["train", "--config", str(cfg), "--out", str(run)]) == 0
    with pytest.raises(SystemExit, match="not trained with --conditional"):
        main(["sample", str(run), "--class", "1", "-n", "4", "--nfe", "5"])
    assert main(["sample", str(run), "--class", "1", "-n", "4", "--nfe", "5", "--guidance-kind",
                 "classifier", "--classifier-steps", "20"]) == 0  # fmt: skip
    assert "noise-conditional classifier" in capsys.readouterr().out


def test_a_conditional_run_samples_p_x_with_classes_drawn_from_the_data(cond_run, capsys):
    """Without --class a conditional run draws each sample's class from the training data's
    class frequencies (seeded by --seed) and samples the conditional model itself (w = 1);
    --class none keeps the unconditional branch."""
    import torch

    from scorelab.data import load

    out = cond_run / "mix.npz"
    assert main(["sample", str(cond_run), "-n", "30", "--nfe", "5", "--seed", "4",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "--class data" in capsys.readouterr().out
    with np.load(out) as f:
        want = load("digits").draw_labels(30, torch.Generator().manual_seed(4))
        assert f["labels"].tolist() == want.tolist()
        provenance = json.loads(str(f["record"]))
    assert provenance["label"] == "data" and provenance["guidance"] == 1.0
    assert main(["sample", str(cond_run), "-n", "4", "--nfe", "5", "--class", "none",
                 "--out", str(cond_run / "none.npz")]) == 0  # fmt: skip
    with np.load(cond_run / "none.npz") as f:
        assert "labels" not in f.files


def test_conditional_likelihood_is_the_class_mixture_bound(cond_run):
    """``likelihood_table`` with a class prior scores each example by its own label:
    bits/dim of x given c plus -log2 p(c) / d (same dequantization and probes)."""
    import math

    import torch

    from scorelab.cli.eval_cmd import likelihood_table
    from scorelab.data import load, quantization_step
    from scorelab.diffusion import bits_per_dim
    from scorelab.training import load_model

    model, held, train = load_model(cond_run)[0], load("digits", split="test"), load("digits")
    prior = train.class_frequencies()
    table = likelihood_table(model, held, 3, 0, True, prior)
    x, c = held.x[:3], held.labels[:3]
    given = bits_per_dim(model, x, quantization_step(held.x), exact=False,
                         generator=torch.Generator().manual_seed(0), cond=c)  # fmt: skip
    want = given - prior[c].log().float() / (64 * math.log(2))
    assert table["bits_per_dim"] == pytest.approx(want.mean().item(), rel=1e-6)
    assert "lower bound" in table["conditional"]
    assert prior.sum().item() == pytest.approx(1.0)


def test_eval_and_denoise_use_a_conditional_runs_labels(cond_run, capsys):
    """``eval --nll`` scores a conditional run as its class mixture (and says so in the output
    and eval.json); ``denoise`` denoises each example given its class."""
    out = cond_run / "nll.json"
    assert main(["eval", str(cond_run), "--nll", "test", "-n", "3", "--hutchinson",
                 "--json", str(out)]) == 0  # fmt: skip
    assert "class-conditional run" in capsys.readouterr().out
    assert "lower bound" in json.loads(out.read_text())["likelihood"]["conditional"]
    assert main(["denoise", str(cond_run), "-n", "4", "--sigma", "0.5",
                 "--out", str(cond_run / "den.png")]) == 0  # fmt: skip
    assert "each given its class" in capsys.readouterr().out


def test_bad_class_is_a_clear_error(cond_run):
    with pytest.raises(SystemExit, match=r"index in 0\.\.9"):
        main(["sample", str(cond_run), "--class", "12", "-n", "4"])


@pytest.mark.parametrize("method", ["posterior", "replacement"])
def test_inpaint_keeps_the_known_pixels_and_scores_the_hidden_ones(cond_run, method, capsys):
    out = cond_run / f"inpaint-{method}.npz"
    assert main(["inpaint", str(cond_run), "-n", "3", "--nfe", "5", "--mask", "top",
                 "--method", method, "--out", str(out)]) == 0  # fmt: skip
    assert "RMSE on hidden values" in capsys.readouterr().out
    with np.load(out) as f:
        mask, filled = f["mask"], f["inpainted"]
        report = json.loads(str(f["record"]))
    assert mask[:, :, :4].sum() == 0 and mask[:, :, 4:].min() == 1  # top half hidden
    from scorelab.data import load

    truth = load("digits", split="test").decode(load("digits", split="test").x[:3]).numpy()
    np.testing.assert_allclose(filled[:, :, 4:], truth[:, :, 4:], atol=1e-4)
    assert report["hidden_share"] == 0.5 and out.with_suffix(".png").exists()


def test_inpaint_imputes_nan_values_of_a_user_file(tmp_path, capsys):
    run = tmp_path / "moons"
    assert main(["train", "--data", "moons", "--n", "500", "--steps", "10", "--batch-size", "32",
                 "--out", str(run)]) == 0  # fmt: skip
    rows = np.array([[0.5, np.nan], [np.nan, 0.2], [1.0, -0.3]], dtype=np.float32)
    np.save(tmp_path / "missing.npy", rows)
    assert main(["inpaint", str(run), "--input", str(tmp_path / "missing.npy"), "--nfe", "5"]) == 0
    assert "imputed 2 missing values in 3 rows" in capsys.readouterr().out
    with np.load(run / "inpaint.npz") as f:
        filled = f["inpainted"]
    known = ~np.isnan(rows)
    np.testing.assert_allclose(filled[known], rows[known], atol=1e-5)
    assert np.isfinite(filled).all()
    with pytest.raises(SystemExit, match=r"--known must list columns in 0\.\.1"):
        main(["inpaint", str(run), "--known", "5"])
