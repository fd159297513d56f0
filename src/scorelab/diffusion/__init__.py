"""Diffusion: noise processes, samplers from denoisers, and the ``sample`` front door.

>>> from scorelab.densities import GaussianMixture
>>> from scorelab import diffusion
>>> gm = GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], 1.0)
>>> res = diffusion.sample(gm, 10_000, sampler="dpmpp_2m", nfe=20, process="edm")
"""

from scorelab.diffusion.api import (
    PRIORS,
    SampleResult,
    as_denoiser,
    model_device,
    sample,
    steps_for_nfe,
)
from scorelab.diffusion.guidance import (
    INPAINT_METHODS,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    Inpainter,
)
from scorelab.diffusion.likelihood import bits_per_dim, log_likelihood, nats_to_bits_per_dim
from scorelab.diffusion.objectives import (
    OBJECTIVES,
    ddpm_loss,
    default_sigmas,
    dsm_loss,
    edm_loss,
    esm_loss,
    ism_loss,
    ncsn_loss,
    ssm_loss,
    weighted_denoising_loss,
)
from scorelab.diffusion.priors import DataPrior
from scorelab.diffusion.processes import (
    DDPM,
    EDM,
    PROCESSES,
    VE,
    VP,
    Process,
    SubVP,
    ddpm_alphas_cumprod,
    make_process,
)
from scorelab.diffusion.samplers import (
    SAMPLERS,
    annealed_langevin,
    ddim,
    ddpm,
    dpmpp_2m,
    dpmpp_3m,
    dpmpp_3m_sde,
    euler,
    euler_maruyama,
    heun,
    ipndm,
    langevin,
    predictor_corrector,
    rk45,
    unipc,
)
from scorelab.diffusion.schedules import check_sigmas, optimized_sigmas

__all__ = [
    "DDPM",
    "EDM",
    "INPAINT_METHODS",
    "OBJECTIVES",
    "PRIORS",
    "PROCESSES",
    "SAMPLERS",
    "VE",
    "VP",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "DataPrior",
    "Inpainter",
    "Process",
    "SampleResult",
    "SubVP",
    "annealed_langevin",
    "as_denoiser",
    "bits_per_dim",
    "check_sigmas",
    "ddim",
    "ddpm",
    "ddpm_alphas_cumprod",
    "ddpm_loss",
    "default_sigmas",
    "dpmpp_2m",
    "dpmpp_3m",
    "dpmpp_3m_sde",
    "dsm_loss",
    "edm_loss",
    "esm_loss",
    "euler",
    "euler_maruyama",
    "heun",
    "ipndm",
    "ism_loss",
    "langevin",
    "log_likelihood",
    "make_process",
    "model_device",
    "nats_to_bits_per_dim",
    "ncsn_loss",
    "optimized_sigmas",
    "predictor_corrector",
    "rk45",
    "sample",
    "ssm_loss",
    "steps_for_nfe",
    "unipc",
    "weighted_denoising_loss",
]
