"""``scorelab sample|eval|denoise|inpaint`` on a diffusers folder (a tiny 8x8 pipeline saved in a
tmp folder; the bundled digits are 8x8 too).

Its UNet's output layer is zero, so it predicts eps = 0: ``D(x, sigma) = x``, the probability-flow
ODE stands still, and the likelihood is the prior's, ``N(0, sigma_max^2 I)``, in closed form
(and the ODE solver is fast: a random network's huge outputs make it stiff).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from scorelab import interop  # noqa: E402
from scorelab.cli.main import main  # noqa: E402


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )  # fmt: skip
    torch.nn.init.zeros_(unet.conv_out.weight)
    torch.nn.init.zeros_(unet.conv_out.bias)
    folder = tmp_path_factory.mktemp("diffusers") / "pipe"
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(folder)
    return folder


def test_sample_then_eval_a_diffusers_pipeline(pipe, tmp_path, capsys):
    out = tmp_path / "s.npz"
    argv = ["sample", str(pipe), "--sampler", "dpmpp_2m", "--nfe", "4", "-n", "20"]
    assert main([*argv, "--out", str(out)]) == 0
    saved = np.load(out)
    assert saved["model_units"].shape == (20, 1, 8, 8)
    assert saved["samples"].min() >= 0 and saved["samples"].max() <= 255  # 8-bit pixel units
    assert json.loads(str(saved["record"]))["run"] == str(pipe)
    assert main(["eval", str(out), "--reference", "digits"]) == 0
    assert "sliced_wasserstein" in json.loads(out.with_suffix(".eval.json").read_text())["metrics"]
    js = tmp_path / "nll.json"
    assert main(["eval", str(pipe), "--nll", "digits", "-n", "2", "--json", str(js)]) == 0
    table = json.loads(js.read_text())["likelihood"]
    # bpd = (log(2 pi sigma_max^2) / 2 + |y|^2 / (2 d sigma_max^2) - log w) / ln 2 per dim, the
    # middle term < 1 / (2 sigma_max^2) ~ 2e-5 for |y| <= 1 (dequantized data in [-1, 1])
    sigma_max = interop.from_diffusers(pipe).sigma_max
    want = (0.5 * math.log(2 * math.pi * sigma_max**2) - math.log(table["bin_width"])) / math.log(2)
    assert table["n"] == 2 and table["bits_per_dim"] == pytest.approx(want, abs=1e-3)


def test_denoise_and_inpaint_a_diffusers_model_folder(pipe, tmp_path, capsys):
    model = pipe / "unet"  # a model folder: its scheduler comes from scheduler_config.json
    (model / "scheduler_config.json").write_text((pipe / "scheduler" / "scheduler_config.json")
                                                 .read_text())  # fmt: skip
    args = ["--data", "digits", "-n", "4"]
    assert main(["denoise", str(model), *args, "--out", str(tmp_path / "d.png")]) == 0
    assert "PSNR" in capsys.readouterr().out
    assert main(["inpaint", str(model), *args, "--nfe", "3", "--out", str(tmp_path / "i.npz")]) == 0
    assert np.load(tmp_path / "i.npz")["inpainted"].shape == (4, 1, 8, 8)


def test_a_diffusers_folder_asks_for_data(pipe):
    with pytest.raises(SystemExit, match="diffusers folder, which carries no data"):
        main(["eval", str(pipe), "--nll", "test"])
    with pytest.raises(SystemExit, match="--data DATA"):
        main(["denoise", str(pipe)])
