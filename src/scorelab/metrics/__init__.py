"""Metrics between sample sets (more arrive with the evaluation issue)."""

from scorelab.metrics.distances import (
    memorization_ratio,
    nearest_neighbor_distances,
    psnr,
    sliced_wasserstein,
)

__all__ = ["memorization_ratio", "nearest_neighbor_distances", "psnr", "sliced_wasserstein"]
