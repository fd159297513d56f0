"""Pictures: chains, densities and samples. Figures are built without pyplot (no display)."""

from scorelab.viz.mcmc import density_grid, plot_mcmc, plot_samples_over_density
from scorelab.viz.samples import draw_grid, image_grid, scatter_2d

__all__ = [
    "density_grid",
    "draw_grid",
    "image_grid",
    "plot_mcmc",
    "plot_samples_over_density",
    "scatter_2d",
]
