"""diffusers <-> scorelab, checked against diffusers' own schedulers on tiny random UNets.

Nothing is downloaded: every model is a randomly initialized 8x8 ``UNet2DModel`` built here
(and saved into a tmp folder where loading is tested). A random network's outputs are large
(|x| ~ 100 after 10 DDIM steps), so "float32 rounding" is a relative error of ~1e-6 of the
largest value; the tolerance is 1e-5 of it.
"""

from __future__ import annotations

import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from scorelab import diffusion, interop, metrics  # noqa: E402
from scorelab._utils import PreDrawn  # noqa: E402
from scorelab.densities import GaussianMixture  # noqa: E402

REL = 1e-5  # float32 rounding of a 10-step loop, relative to the largest value


def tiny_unet(seed: int = 0, num_class_embeds: int | None = None, size: int = 8):
    """A 42k-parameter UNet2DModel on 1x8x8 images, randomly initialized."""
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(
        sample_size=size, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
        num_class_embeds=num_class_embeds,
    )  # fmt: skip
    return unet.eval().requires_grad_(False)


def close(a: torch.Tensor, b: torch.Tensor, rel: float = REL) -> bool:
    scale = max(float(b.abs().max()), 1.0)
    return float((a.to(b) - b).abs().max()) <= rel * scale


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


# -- sampling loops: scorelab's samplers on a wrapped UNet vs diffusers' schedulers -------------
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ddim_reproduces_diffusers_ddim_scheduler(unet, prediction_type):
    sched = diffusers.DDIMScheduler(clip_sample=False, prediction_type=prediction_type)
    sched.set_timesteps(10)
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # diffusers' own loop
        x = x_T.clone()
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x).prev_sample
    model = interop.from_diffusers(unet, sched)
    sigmas = model.schedule.sigmas_at(sched.timesteps)  # diffusers' timesteps, then 0
    # sigma-space starts at x_T / sqrt(alpha_bar_T) = x_T sqrt(1 + sigma_T^2); float64 keeps
    # t(sigma) on the integer timesteps
    ours = diffusion.ddim(model, x_T.double() * (1 + sigmas[0] ** 2).sqrt(), sigmas)
    assert close(ours, x), float((ours.float() - x).abs().max())


def test_ddpm_ancestral_reproduces_diffusers_ddpm_scheduler(unet):
    sched = diffusers.DDPMScheduler(clip_sample=False)  # variance beta_tilde ("fixed_small")
    sched.set_timesteps(10)
    gen = torch.Generator().manual_seed(2)
    x_T = torch.randn(4, 1, 8, 8, generator=gen)
    # the noise diffusers draws at each step with t > 0, in order, shared with scorelab
    noise = [torch.randn(4, 1, 8, 8, generator=gen) for t in sched.timesteps if t > 0]
    replay = torch.Generator().manual_seed(2)
    torch.randn(4, 1, 8, 8, generator=replay)
    with torch.no_grad():
        x = x_T.clone()
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x, generator=replay).prev_sample
    model = interop.from_diffusers(unet, sched)
    sigmas = model.schedule.sigmas_at(sched.timesteps)
    # the noise is in x_t units; sigma-space adds c z with the same z (c sqrt(alpha_bar_prev)
    # is diffusers' sqrt(beta_tilde)), so the draws are shared as they are
    draws = PreDrawn([z.double() for z in noise])
    ours = diffusion.ddpm(model, x_T.double() * (1 + sigmas[0] ** 2).sqrt(), sigmas,
                          generator=draws)  # fmt: skip
    assert draws.i == len(noise)
    assert close(ours, x), float((ours.float() - x).abs().max())


# -- round trips: wrap -> as_diffusers_model -> from_diffusers ----------------------------------
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_round_trip_gives_back_the_model_and_the_denoiser(unet, prediction_type):
    sched = diffusers.DDPMScheduler(prediction_type=prediction_type)
    model = interop.from_diffusers(unet, sched)
    back = interop.as_diffusers_model(model, sched)
    x_t = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0, 417, 999])
    # the diffusers-side output is the UNet's own, in its prediction_type
    assert close(back(x_t.double(), t).sample, unet(x_t, t).sample, 1e-6)
    again = interop.from_diffusers(back, sched)
    # and the denoiser survives at levels on and between the trained timesteps
    sigma = torch.cat([model.schedule.t_to_sigma(torch.tensor([5.0])), torch.tensor([0.3, 40.0],
                       dtype=torch.float64)])  # fmt: skip
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    # (the inner UNet sees x_t in float32 again: float32 rounding of D at sigma = 40)
    assert close(again(x, sigma), model(x, sigma))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_exact_denoiser_predicts_what_diffusers_defines(prediction_type):
    """An exact Gaussian-mixture denoiser as a diffusers model: its output at x_t is eps, v
    (diffusers' ``get_velocity``) or x_0 of the same (x_0, eps) pair under the schedule."""
    gm = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.5]], 0.1)
    sched = diffusers.DDPMScheduler(prediction_type=prediction_type)
    model = interop.as_diffusers_model(gm, sched)
    t = torch.tensor([10, 300, 900])
    ab = sched.alphas_cumprod[t].double()[:, None]
    x_t = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    sigma = ((1 - ab) / ab).sqrt()
    x0 = gm.denoise(x_t / ab.sqrt(), sigma[:, 0])
    eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
    want = {"epsilon": eps, "sample": x0,
            "v_prediction": sched.get_velocity(x0, eps, t)}[prediction_type]  # fmt: skip
    assert torch.allclose(model(x_t, t).sample, want.double(), rtol=1e-5, atol=1e-5)


# -- diffusers' solver drives an exact density ------------------------------------------------
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers'
def test_dpm_solver_scheduler_samples_a_wrapped_gaussian_mixture():
    gm = GaussianMixture([0.3, 0.7], [[-1.0, -0.5], [1.0, 0.5]], 0.05)
    sched = diffusers.DPMSolverMultistepScheduler()
    sched.set_timesteps(50)
    model = interop.as_diffusers_model(gm, sched)
    n = 2000
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64) * sched.init_noise_sigma
    for t in sched.timesteps:
        x = sched.step(model(x, t).sample, t, x).prev_sample
    ref = gm.sample(n, generator=gen)
    sw = metrics.sliced_wasserstein(x, ref, generator=torch.Generator().manual_seed(0))
    # spread of the same distance between two exact sample sets of this size (20 repeats):
    # the solver's samples must be as close to the mixture as exact samples are, mean + 4 sd
    exact = torch.stack([
        metrics.sliced_wasserstein(gm.sample(n, generator=gen), gm.sample(n, generator=gen),
                                   generator=torch.Generator().manual_seed(0))
        for _ in range(20)
    ])  # fmt: skip
    assert sw <= exact.mean() + 4 * exact.std(), (float(sw), exact.mean(), exact.std())


# -- the pipelines take a scorelab model -----------------------------------------------------
def test_ddim_pipeline_runs_a_scorelab_denoiser_like_the_unet(unet):
    sched = diffusers.DDIMScheduler(clip_sample=False)
    ours = interop.as_diffusers_model(interop.from_diffusers(unet, sched), sched)
    assert ours.config.sample_size == 8 and ours.config.in_channels == 1
    kw = {"batch_size": 2, "num_inference_steps": 5, "output_type": "np"}
    theirs = diffusers.DDIMPipeline(unet=unet, scheduler=sched)(
        generator=torch.Generator().manual_seed(7), **kw
    ).images
    mine = diffusers.DDIMPipeline(unet=ours, scheduler=sched)(
        generator=torch.Generator().manual_seed(7), **kw
    ).images
    assert abs(mine - theirs).max() < 1e-4


# -- loading folders, conditioning, and what scorelab's tools need ------------------------------
def test_pipeline_and_model_folders_load(unet, tmp_path):
    sched = diffusers.DDPMScheduler(
        beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(tmp_path / "pipe")
    unet.save_pretrained(tmp_path / "model")
    assert interop.is_diffusers_folder(tmp_path / "pipe")
    assert interop.is_diffusers_folder(tmp_path / "model")
    assert not interop.is_diffusers_folder(tmp_path)
    from_pipe = interop.from_diffusers(tmp_path / "pipe")
    assert from_pipe.prediction_type == "v_prediction"
    assert torch.allclose(from_pipe.schedule.alphas_cumprod, sched.alphas_cumprod.double())
    with pytest.raises(ValueError, match="no scheduler"):
        interop.from_diffusers(tmp_path / "model")
    from_model = interop.from_diffusers(tmp_path / "model", tmp_path / "pipe" / "scheduler")
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(from_pipe(x, 2.0), from_model(x, 2.0))
    assert from_model.event_shape == (1, 8, 8)
    ab0 = float(sched.alphas_cumprod[0])
    assert from_model.sigma_min == pytest.approx(((1 - ab0) / ab0) ** 0.5, rel=1e-12)


def test_clear_errors(unet, tmp_path):
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "config.json").write_text(
        json.dumps({"_class_name": "UNet2DConditionModel"})
    )
    with pytest.raises(ValueError, match="out of scope"):
        interop.from_diffusers(tmp_path / "sd")
    with pytest.raises(ValueError, match="epsilon, v_prediction, sample"):
        interop.from_diffusers(unet, {"prediction_type": "mu"})
    with pytest.raises(ValueError, match="beta_schedule"):
        interop.from_diffusers(unet, {"beta_schedule": "exp"})
    with pytest.raises(ValueError, match="not a discrete VP"):
        interop.from_diffusers(unet, diffusers.ScoreSdeVeScheduler())


def test_class_conditional_model_takes_labels():
    unet = tiny_unet(num_class_embeds=3)
    sched = diffusers.DDPMScheduler()
    model = interop.from_diffusers(unet, sched)
    assert model.num_classes == 3
    x_t = torch.randn(2, 1, 8, 8)
    labels = torch.tensor([0, 2])
    sigma = model.schedule.sigmas[500]
    want = x_t / sched.alphas_cumprod[500].sqrt() - sigma * unet(x_t, 500, labels).sample
    got = model(x_t.double() * (1 + sigma**2).sqrt(), sigma, labels)
    assert close(got, want, 1e-6)
    with pytest.raises(ValueError, match="null_class"):
        model(x_t, 1.0)
    guided = diffusion.ClassifierFreeGuidance(
        interop.from_diffusers(unet, sched, null_class=2), 2.0
    )
    res = diffusion.sample(guided, 2, sampler="dpmpp_2m", nfe=4, cond=1)
    assert res.samples.shape == (2, 1, 8, 8) and torch.isfinite(res.samples).all()


def test_scorelab_tools_run_on_a_wrapped_model(unet):
    model = interop.from_diffusers(unet, diffusers.DDPMScheduler())
    gen = torch.Generator().manual_seed(8)
    res = diffusion.sample(model, 3, sampler="dpmpp_2m", nfe=5, generator=gen)  # event_shape
    assert res.samples.shape == (3, 1, 8, 8) and diffusion.model_device(model).type == "cpu"
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :4] = True
    inpaint = diffusion.Inpainter(model, res.samples[0], mask)
    filled = diffusion.sample(inpaint, 3, sampler="euler", nfe=4, generator=gen).samples
    assert torch.allclose(filled[:, :, :4], res.samples[:1, :, :4].expand(3, -1, -1, -1))
    # log_likelihood / bits_per_dim: tests/interop/test_cli.py (closed form, eps = 0 model)
