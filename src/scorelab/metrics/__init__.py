"""Metrics between sample sets (more arrive with the evaluation issue)."""

from scorelab.metrics.distances import sliced_wasserstein

__all__ = ["sliced_wasserstein"]
