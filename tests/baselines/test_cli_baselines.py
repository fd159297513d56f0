"""The baselines through the command line: train with the shared trainer, sample the run,
clear errors, and ``scorelab compare --quick``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scorelab import baselines
from scorelab.cli.main import main
from scorelab.training import load_model


@pytest.mark.parametrize("model", ["vae", "gan", "dae"])
def test_train_then_sample_a_baseline_run(model, tmp_path, capsys):
    run = tmp_path / model
    assert main(["train", "--model", model, "--data", "moons", "--n", "500", "--steps", "20",
                 "--batch-size", "32", "--out", str(run)]) == 0  # fmt: skip
    assert "to step 20" in capsys.readouterr().out
    record = json.loads((run / "config.json").read_text())
    assert record["train"]["model"] == model and record["model"]["kind"] == model
    loaded, _ = load_model(run)
    assert baselines.is_baseline(loaded) and loaded.kind == model
    assert main(["sample", str(run), "-n", "16"]) == 0
    with np.load(run / "samples.npz") as f:
        assert f["samples"].shape == (16, 2) and np.isfinite(f["samples"]).all()
    assert (run / "samples.png").exists()
    # resume continues the same run
    assert main(["train", "--resume", str(run), "--steps", "25"]) == 0
    assert "to step 25" in capsys.readouterr().out


def test_conv_vae_on_digits_and_its_samples_in_data_units(tmp_path):
    run = tmp_path / "digits"
    assert main(["train", "--model", "vae", "--data", "digits", "--net", "unet", "--steps", "3",
                 "--batch-size", "8", "--out", str(run)]) == 0  # fmt: skip
    config = json.loads((run / "config.json").read_text())["model"]
    assert config["arch"] == "conv" and config["dequantize"] == pytest.approx(0.125)
    assert main(["sample", str(run), "-n", "4"]) == 0
    with np.load(run / "samples.npz") as f:
        assert f["samples"].shape == (4, 1, 8, 8)
        np.testing.assert_allclose(f["samples"], (f["model_units"] + 1) * 8, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "gan", "--data", "digits", "--conditional"], "conditional training is "
         "unsupported for model 'gan'"),
        (["--model", "vae", "--objective", "dsm"], "objective 'dsm' trains score models"),
        (["--model", "dae", "--net", "unet"], "arch 'conv' needs images"),
    ],
)  # fmt: skip
def test_bad_baseline_options_are_clear_errors(args, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        main(["train", *args, "--steps", "2", "--out", str(tmp_path / "r")])


def test_compare_quick_on_moons(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--data", "moons", "--quick", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name in ("score model (EDM)", "VAE", "GAN", "DAE", "sliced_wasserstein", "IWAE"):
        assert name in text, name
    result = json.loads((out / "compare.json").read_text())
    rows = {r["family"]: r for r in result["rows"]}
    assert set(rows) == {"data", "score", "vae", "vae_mean", "gan", "dae"}
    params = [rows[f]["parameters"] for f in ("score", "vae", "gan", "dae")]
    assert max(params) / min(params) < 1.1  # similar parameter counts
    assert rows["vae"]["elbo"] <= rows["vae"]["iwae"] + 0.5  # bounds in nats, same examples
    assert "none" in rows["gan"]["likelihood_kind"] and "none" in rows["dae"]["likelihood_kind"]
    assert (out / "compare.png").stat().st_size > 10_000 and (out / "compare.md").exists()
    # a second call loads the finished runs instead of training again
    assert main(["compare", "--data", "moons", "--quick", "--out", str(out),
                 "--models", "vae,gan"]) == 0  # fmt: skip
    assert "vae: loaded" in capsys.readouterr().out


@pytest.mark.parametrize("model", ["vae", "gan"])
def test_resumed_baseline_run_continues_the_same_loss_curve(model, tmp_path):
    from scorelab.training import TrainConfig, resume, train

    common = dict(data="moons", n=300, model=model, batch_size=16, checkpoint_every=10)
    full = train(TrainConfig(steps=20, out=str(tmp_path / "a"), **common), progress=False)
    train(TrainConfig(steps=10, out=str(tmp_path / "b"), **common), progress=False)
    rest = resume(tmp_path / "b", steps=20, progress=False)
    assert rest.losses == full.losses[10:]  # bit for bit: weights, buffers, optimizer, RNG
