"""Pictures: chains, densities and samples. Figures are built without pyplot (no display)."""

from scorelab.viz.mcmc import density_grid, plot_mcmc, plot_samples_over_density

__all__ = ["density_grid", "plot_mcmc", "plot_samples_over_density"]
