"""Conditional generation on top of any denoiser: classifier-free guidance and inpainting.

Each wrapper is again a denoiser ``D(x, sigma, cond=None)``, so every sampler uses it as is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from scorelab._utils import append_dims, randn


class ClassifierFreeGuidance:
    """``D_w = D(x, sigma) + w (D(x, sigma, c) - D(x, sigma))`` (Ho & Salimans 2022, eq. 6 in
    denoiser form): ``w = 0`` is unconditional, ``w = 1`` conditional, ``w > 1`` guided.

    The unconditional term is the model with ``cond=None`` (the "no label" token). Two network
    evaluations per call (``evals_per_call``), which the sampler front door counts.
    """

    def __init__(self, model: Callable, weight: float):
        self.model, self.weight = model, float(weight)
        self.evals_per_call = 1 if self.weight in (0.0, 1.0) else 2

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None or self.weight == 0.0:
            return self.model(x, sigma, None)
        if self.weight == 1.0:
            return self.model(x, sigma, cond)
        uncond = self.model(x, sigma, None)
        return uncond + self.weight * (self.model(x, sigma, cond) - uncond)


class Inpainter:
    """Replacement inpainting (Song et al. 2021, Appendix I.2, in denoiser form): known values
    (``mask`` = 1) are fed to the network noised to the current sigma and returned exactly by
    the denoiser, so the unknown part is generated consistently with them.

    An approximation to sampling ``p(x_unknown | x_known)`` (exact only as the network's
    posterior given the noised known part); tested against exact Gaussian conditionals.
    """

    def __init__(self, model: Callable, known: Tensor, mask: Tensor,
                 generator: torch.Generator | None = None):  # fmt: skip
        if known.shape != mask.shape:
            raise ValueError(
                f"known and mask must have the same shape; got {tuple(known.shape)} and "
                f"{tuple(mask.shape)}"
            )
        self.model, self.known, self.generator = model, known, generator
        self.mask = mask.to(known.dtype)

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor | None = None) -> Tensor:
        known, mask = self.known.to(x), self.mask.to(x)
        noise = randn(tuple(x.shape), self.generator, x.dtype, x.device)
        noisy_known = known + append_dims(sigma, x.ndim) * noise
        x_in = mask * noisy_known + (1 - mask) * x
        out = self.model(x_in, sigma, cond) if cond is not None else self.model(x_in, sigma)
        return mask * known + (1 - mask) * out
