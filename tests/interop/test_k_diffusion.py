"""The k-diffusion recipe: its samplers run scorelab denoisers as they are (same contract,
``model(x, sigma_batch, **extra_args)`` in sigma-space), and give scorelab's answers.

k-diffusion's package imports torchvision, so only ``k_diffusion/sampling.py`` is loaded, by
file, with a stub ``utils`` (as ``benchmarks/_peers.py`` does); skipped when not installed.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from scorelab import diffusion
from scorelab.densities import GaussianMixture


def _load_sampling():
    spec = importlib.util.find_spec("k_diffusion")  # the folder only; its __init__ never runs
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion torchsde "
                    "torchdiffeq trampoline)")  # fmt: skip
    pytest.importorskip("torchsde")
    pytest.importorskip("torchdiffeq")
    root = Path(next(iter(spec.submodule_search_locations)))
    package, utils = types.ModuleType("_kd_test"), types.ModuleType("_kd_test.utils")
    package.__path__ = []
    utils.append_dims = lambda x, n: x[(..., *(None,) * (n - x.ndim))]
    package.utils = utils
    sys.modules.update({"_kd_test": package, "_kd_test.utils": utils})
    file_spec = importlib.util.spec_from_file_location("_kd_test.sampling", root / "sampling.py")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules["_kd_test.sampling"] = module
    file_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kd():
    return _load_sampling()


GM = GaussianMixture([0.3, 0.7], [[-1.0, -0.5], [1.0, 0.5]], 0.05)


@pytest.mark.parametrize(("theirs", "ours"), [("sample_euler", "euler"), ("sample_heun", "heun"),
                                              ("sample_dpmpp_2m", "dpmpp_2m")])  # fmt: skip
def test_k_diffusion_samplers_run_a_scorelab_denoiser(kd, theirs, ours):
    sigmas = diffusion.make_process("edm").sigmas(20)  # float64, ends in 0: k-diffusion's form
    x = 80.0 * torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = getattr(kd, theirs)(GM.denoise, x, sigmas, disable=True)
    want = diffusion.SAMPLERS[ours](GM.denoise, x, sigmas)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)


def test_conditional_denoiser_takes_labels_through_extra_args(kd):
    diffusers = pytest.importorskip("diffusers")
    from scorelab import interop

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, num_class_embeds=3,
    ).eval()  # fmt: skip
    model = interop.from_diffusers(unet, diffusers.DDPMScheduler())
    sigmas = diffusion.make_process("edm", sigma_max=model.sigma_max).sigmas(5)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2])
    got = kd.sample_euler(model, x, sigmas, extra_args={"cond": labels}, disable=True)
    want = diffusion.euler(lambda x, s: model(x, s, labels), x, sigmas)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)  # same steps, other rounding
