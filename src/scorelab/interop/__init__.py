"""Adapters to and from other libraries' diffusion models (diffusers, k-diffusion).

- ``from_diffusers(model_or_folder, scheduler=None)``: a diffusers ``UNet2DModel`` (object,
  pipeline, or a folder saved with ``save_pretrained``) as a scorelab denoiser
  ``D(x, sigma, cond)``, so every sampler, ``log_likelihood``/``bits_per_dim``, guidance,
  inpainting and ``metrics.evaluate`` take it unchanged.
- ``as_diffusers_model(denoiser, scheduler)``: any scorelab denoiser as a model that diffusers'
  schedulers and DDPM/DDIM pipelines call, ``model(x_t, t).sample``.
- k-diffusion needs no adapter: its samplers call ``model(x, sigma_batch, **extra_args)`` on a
  denoiser in the same sigma-space, so a scorelab denoiser *is* a k-diffusion denoiser
  (``sample_dpmpp_2m(denoiser, x, sigmas, extra_args={"cond": labels})``) and a k-diffusion
  denoiser is a scorelab one (``diffusion.sample(kdiff_model, n, shape=...)``).

diffusers is imported only when a saved folder is loaded; it stays an optional extra
(``pip install 'scorelab[diffusers]'``).

>>> from scorelab import diffusion, interop
>>> model = interop.from_diffusers("my-ddpm-pipeline")  # doctest: +SKIP
>>> res = diffusion.sample(model, 64, sampler="dpmpp_2m", nfe=20)  # doctest: +SKIP
"""

from scorelab.interop.diffusers import (
    DiffusersDenoiser,
    ScorelabDiffusersModel,
    as_diffusers_model,
    from_diffusers,
    is_diffusers_folder,
)
from scorelab.interop.schedule import (
    PREDICTION_TYPES,
    DiscreteSchedule,
    alphas_cumprod_from_config,
    read_scheduler_config,
)

__all__ = [
    "PREDICTION_TYPES",
    "DiffusersDenoiser",
    "DiscreteSchedule",
    "ScorelabDiffusersModel",
    "alphas_cumprod_from_config",
    "as_diffusers_model",
    "from_diffusers",
    "is_diffusers_folder",
    "read_scheduler_config",
]
