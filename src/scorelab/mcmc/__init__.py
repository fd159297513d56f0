"""MCMC for densities you can write down: kernels, a runner with adaptation, diagnostics.

>>> from scorelab import densities, mcmc
>>> res = mcmc.sample(densities.Banana(), kernel="mala", chains=16, steps=2000)
>>> print(res.report())
"""

from scorelab.mcmc.chees import chees_step  # registers kernel "chees"
from scorelab.mcmc.diagnostics import (
    Summary,
    autocorrelation,
    bfmi,
    ess,
    mcse,
    rhat,
    summary,
    verdict,
)
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
from scorelab.mcmc.nuts import nuts_step  # registers kernel "nuts"
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
    "bfmi",
    "chees_step",
    "ess",
    "hmc_step",
    "init",
    "leapfrog",
    "mala_step",
    "mcse",
    "mh_accept",
    "nuts_step",
    "random_walk_step",
    "rhat",
    "rwm_step",
    "sample",
    "sgld_step",
    "summary",
    "ula_step",
    "verdict",
]
