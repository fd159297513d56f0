"""scorelab: score-based generative modeling in PyTorch.

Langevin MCMC needs only the score ``grad log p(x)``; the score can be learned by denoising
(Tweedie: ``E[X | X + sigma N = y] = y + sigma^2 grad log p_sigma(y)``). scorelab builds on
these two facts: known densities with exact smoothed scores, MCMC kernels, score learning and
diffusion samplers, all testable against exact answers.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scorelab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
