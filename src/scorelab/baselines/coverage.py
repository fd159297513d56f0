"""Mode coverage of a sample set on data with known modes: does a generator drop modes?

Each sample is assigned to its nearest mode if it lies within ``radius`` of it, else to "off
mode". With ``n`` samples of a model that puts weight ``w_k`` on mode ``k``, the share
``s_k`` assigned to it has standard error ``sqrt(w_k (1 - w_k) / n)`` (a binomial proportion),
so a mode is *missing* (under-covered: collapse) when ``s_k < w_k - z se_k`` and *over-covered*
when ``s_k > w_k + z se_k`` (Srivastava et al. 2017 count modes "captured" similarly).

With ``normalize=True`` the shares are taken among the on-mode samples only (``n`` is then
their number): a generator that maps a connected latent space onto separated modes always puts
some mass between them (reported as ``off_mode``), and this asks only how it weights the modes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scorelab._utils import as_tensor


@dataclass(frozen=True)
class ModeCoverage:
    """Per-mode shares of a sample set against the modes' weights."""

    shares: Tensor  # [K] share of samples within radius of mode k (nearest mode)
    weights: Tensor  # [K] the modes' weights (normalized to sum 1 - expected off-mode share)
    tolerance: Tensor  # [K] z * sqrt(w (1 - w) / n)
    off_mode: float  # share of samples farther than radius from every mode
    n: int  # the samples the shares are taken over

    @property
    def missing(self) -> list[int]:
        """Modes whose share is below ``weight - tolerance`` (dropped or starved)."""
        return [int(k) for k in torch.nonzero(self.shares < self.weights - self.tolerance)]

    @property
    def excess(self) -> list[int]:
        """Modes whose share is above ``weight + tolerance``."""
        return [int(k) for k in torch.nonzero(self.shares > self.weights + self.tolerance)]

    @property
    def covered(self) -> int:
        """Number of modes not missing."""
        return len(self.shares) - len(self.missing)

    @property
    def collapsed(self) -> bool:
        """True when at least one mode is missing (mode collapse or dropping)."""
        return bool(self.missing)

    @property
    def ok(self) -> bool:
        """Every share within its tolerance of the mode's weight."""
        return not self.missing and not self.excess

    def report(self) -> str:
        """One line per mode: share vs weight +- tolerance."""
        lines = [
            f"mode {k}: share {s:.3f}  weight {w:.3f} +- {t:.3f}"
            + ("  MISSING" if k in self.missing else "  EXCESS" if k in self.excess else "")
            for k, (s, w, t) in enumerate(
                zip(
                    self.shares.tolist(),
                    self.weights.tolist(),
                    self.tolerance.tolist(),
                    strict=True,
                )
            )
        ]
        lines.append(f"off mode: {self.off_mode:.3f}; {self.covered}/{len(self.shares)} covered")
        return "\n".join(lines)


def mode_coverage(
    samples: Tensor,
    means: object,
    weights: object,
    radius: float,
    *,
    z: float = 3.0,
    expected_off_mode: float = 0.0,
    normalize: bool = False,
) -> ModeCoverage:
    """Shares of ``samples`` ``[n, d]`` near each of the ``means`` ``[K, d]`` against the modes'
    ``weights`` ``[K]``, with tolerances ``z * sqrt(w (1 - w) / n)`` from the sample size.

    ``radius`` should hold nearly all of a mode's mass (e.g. 4 component stds in 2-D keeps
    all but ``exp(-8) ~ 3e-4``); ``expected_off_mode`` is the share of the true law outside
    every ball, which the weights are scaled down by (ignored with ``normalize``, where the
    shares are among the on-mode samples).
    """
    if not isinstance(samples, Tensor) or samples.ndim != 2 or not samples.is_floating_point():
        raise ValueError("samples must be a floating tensor [n, d]")
    mu = as_tensor(means, "means").to(samples)
    w = as_tensor(weights, "weights", torch.float64)
    if mu.ndim != 2 or mu.shape[1] != samples.shape[1]:
        raise ValueError(
            f"means must be [K, {samples.shape[1]}] (one row per mode); got {tuple(mu.shape)}"
        )
    if w.shape != (mu.shape[0],) or (w < 0).any() or abs(float(w.sum()) - 1) > 1e-6:
        raise ValueError(f"weights must be [{mu.shape[0]}] non-negative numbers summing to 1")
    if not radius > 0:
        raise ValueError(f"radius must be > 0; got {radius!r}")
    if not 0 <= expected_off_mode < 1:
        raise ValueError(f"expected_off_mode must be in [0, 1); got {expected_off_mode!r}")
    n = samples.shape[0]
    dist = torch.cdist(samples, mu)  # [n, K]
    nearest_d, nearest = dist.min(1)
    inside = nearest_d <= radius
    counts = torch.bincount(nearest[inside], minlength=mu.shape[0]).double()
    off_mode = float(1 - inside.double().mean())
    if normalize:
        n = int(inside.sum())
        if n == 0:
            raise ValueError(f"no sample lies within radius {radius} of a mode; nothing to share")
    else:
        w = w * (1 - expected_off_mode)
    shares = counts / n
    tol = z * (w * (1 - w) / n).sqrt()
    return ModeCoverage(shares, w, tol, off_mode, n)
