"""MCMC for densities you can write down: kernels, a runner with adaptation, diagnostics.

>>> from scorelab import densities, mcmc
>>> res = mcmc.sample(densities.Banana(), kernel="mala", chains=16, steps=2000)
>>> print(res.report())
"""

from scorelab.mcmc.diagnostics import Summary, autocorrelation, ess, mcse, rhat, summary
from scorelab.mcmc.kernels import (
    KERNELS,
    Info,
    Kernel,
    State,
    hmc_step,
    init,
    leapfrog,
    mala_step,
    mh_accept,
    random_walk_step,
    rwm_step,
    sgld_step,
    ula_step,
)
from scorelab.mcmc.posterior import Posterior
from scorelab.mcmc.runner import MCMCResult, sample

__all__ = [
    "KERNELS",
    "Info",
    "Kernel",
    "MCMCResult",
    "Posterior",
    "State",
    "Summary",
    "autocorrelation",
    "ess",
    "hmc_step",
    "init",
    "leapfrog",
    "mala_step",
    "mcse",
    "mh_accept",
    "random_walk_step",
    "rhat",
    "rwm_step",
    "sample",
    "sgld_step",
    "summary",
    "ula_step",
]
