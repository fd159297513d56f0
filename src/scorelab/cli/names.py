"""The library's registry names, as the command-line parsers need them, without importing torch.

``scorelab --help`` and argument errors must be instant, so the parsers cannot import the
packages that hold these registries. ``tests/cli/test_cli_help.py`` asserts that every tuple
here equals the library's own registry (same names, same order): when you add a kernel, sampler,
data set, ... to the library, add its name here too.
"""

# scorelab.densities.NAMED
DENSITIES = ("gaussian", "two-modes", "ring", "laplace", "banana", "funnel")
# scorelab.mcmc.KERNELS
KERNELS = ("rwm", "random_walk", "ula", "mala", "hmc", "sgld", "chees", "nuts")
# scorelab.data.DATASETS
DATASETS = ("ring", "moons", "swiss_roll", "checkerboard", "circles", "spiral", "digits")
# scorelab.diffusion.OBJECTIVES
OBJECTIVES = ("esm", "ism", "ssm", "dsm", "ncsn", "ddpm", "edm", "flow_matching")
# scorelab.diffusion.SAMPLERS
SAMPLERS = ("langevin", "annealed_langevin", "ddpm", "ddim", "euler_maruyama", "pc", "euler",
            "heun", "rk45", "dpmpp_2m", "dpmpp_3m", "dpmpp_3m_sde", "unipc", "ipndm")  # fmt: skip
# scorelab.diffusion.PROCESSES
PROCESSES = ("ve", "edm", "vp", "subvp", "ddpm", "flow")
# scorelab.diffusion.INPAINT_METHODS
INPAINT_METHODS = ("replacement", "posterior")
# scorelab.nets.NETS
NETS = ("mlp", "unet")
# scorelab.nets.PARAMETERIZATIONS
PARAMETERIZATIONS = ("score", "energy", "eps", "edm", "velocity")
# scorelab.training.config.LR_SCHEDULES
LR_SCHEDULES = ("constant", "cosine", "linear")
# scorelab.demos.DEMOS
DEMOS = ("langevin-1d", "langevin-2d", "random-walk", "metropolis", "score-field", "smoothing",
         "concentration", "tweedie", "annealed", "diffusion", "sgld")  # fmt: skip
