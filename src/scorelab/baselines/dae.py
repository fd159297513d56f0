"""The denoising autoencoder (Vincent et al. 2008; Vincent 2011) at one noise level, and how to
sample from it.

Training: corrupt ``x~ = x + sigma n``, ``n ~ N(0, I)``, and regress the clean example,
``min_r E |r(x~) - x|^2``. The minimizer is ``r*(x~) = E[x | x~]``, so by Tweedie's formula
(Efron 2011; Vincent 2011; Alain & Bengio 2014)

    r*(x~) - x~ = sigma^2 grad log p_sigma(x~),    p_sigma = p * N(0, sigma^2 I):

the DAE learns the score of the data *smoothed at its one sigma* (``DAE.score``). This is the
single-noise-level special case of the library's denoisers; score models learn every sigma.
``r`` is parameterized with the EDM skip at the fixed sigma (Karras et al. 2022),
``r(x~) = c_skip x~ + c_out F(c_in x~)``, and the loss is divided by ``c_out^2`` (a constant),
which leaves the minimizer unchanged. ``F`` is an autoencoder: an MLP for vectors, a small
conv encoder -> ``code_dim`` -> conv decoder for images.

Sampling (``sampler="langevin"``, the default): unadjusted Langevin dynamics with the implied
score, ``x <- x + h s(x) + sqrt(2 h) xi``, ``h = step_scale * sigma^2``, from
``N(0, (sigma_data^2 + sigma^2) I)``, then one Tweedie step ``x <- r(x)``. Why this one: its
stationary law is known, ``p_sigma`` up to the ULA bias ``O(h / sigma^2)`` (the Langevin
target is exactly the density whose score the DAE learned), and the final ``r`` maps it to
posterior means ``E[x | x~]`` (Song & Ermon 2019's last denoising step). The Gibbs-like chain of
Bengio et al. 2013, ``x <- r(x + sigma n)`` (``sampler="gibbs"``), is consistent only when
``r`` *samples* ``P(x | x~)``; a squared-error DAE gives only its mean, so that chain contracts
(for ``N(0, 1)`` data at sigma 0.5 its stationary variance is 0.44, not 1). Both are
single-scale: far from the data the score is untrained, and modes are weighted by their basins
of attraction (the pitfall annealing fixes; Song & Ermon 2019).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from scorelab._utils import randn
from scorelab.baselines._base import (
    Baseline,
    check_arch,
    check_kind,
    check_sizes,
    check_unconditional,
    decoder,
    encoder,
    mlp,
)
from scorelab.errors import DivergenceError
from scorelab.nets._common import check_int, seeded

SAMPLERS = ("langevin", "gibbs")


class DAE(Baseline):
    """A denoiser ``r(x~)`` of examples corrupted at one ``sigma`` (model units).

    ``sigma_data`` is the data's std (EDM preconditioning, and the scale of the sampler's
    starting noise); ``sampler``, ``sampler_steps`` and ``step_scale`` set ``sample``.
    """

    kind = "dae"

    def __init__(
        self,
        event_shape: Sequence[int],
        sigma: float = 0.3,
        sigma_data: float = 1.0,
        arch: str = "mlp",
        hidden: int = 128,
        depth: int = 3,
        channels: int = 32,
        code_dim: int = 128,
        sampler: str = "langevin",
        sampler_steps: int = 500,
        step_scale: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__(event_shape)
        shape = self.event_shape
        check_arch(arch, shape)
        check_sizes(hidden, depth, channels)
        check_int(code_dim, "code_dim")
        check_int(sampler_steps, "sampler_steps", 0)
        for name, value in (("sigma", sigma), ("sigma_data", sigma_data)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
        if sampler not in SAMPLERS:
            raise ValueError(
                f"unknown DAE sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}"
            )
        if not 0 < step_scale <= 1:
            raise ValueError(
                f"step_scale must be in (0, 1] (the Langevin step is step_scale * sigma^2); got "
                f"{step_scale!r}"
            )
        self.sigma, self.sigma_data = float(sigma), float(sigma_data)
        self.sampler, self.sampler_steps, self.step_scale = sampler, sampler_steps, step_scale
        self._config = dict(
            sigma=sigma, sigma_data=sigma_data, arch=arch, hidden=hidden, depth=depth,
            channels=channels, code_dim=code_dim, sampler=sampler, sampler_steps=sampler_steps,
            step_scale=step_scale, seed=seed,
        )  # fmt: skip
        with seeded(seed):
            if arch == "conv":
                self.net = nn.Sequential(
                    encoder(arch, shape, code_dim, hidden, depth, channels),
                    nn.SiLU(),
                    decoder(arch, code_dim, shape, hidden, depth, channels, zero_last=True),
                )
            else:
                d = math.prod(shape)
                self.net = nn.Sequential(
                    nn.Flatten(), mlp([d, *[hidden] * depth, d], zero_last=True),
                    nn.Unflatten(1, shape),
                )  # fmt: skip
        var = sigma**2 + sigma_data**2
        self.c_skip = sigma_data**2 / var
        self.c_out = sigma * sigma_data / math.sqrt(var)
        self.c_in = 1 / math.sqrt(var)

    @property
    def nfe(self) -> int:
        return self.sampler_steps + 1

    def reconstruct(self, x: Tensor) -> Tensor:
        """``r(x~) ~ E[x | x~]`` for examples corrupted at ``self.sigma``, shaped like ``x``."""
        return self.c_skip * x + self.c_out * self.net(self.c_in * x)

    def score(self, x: Tensor) -> Tensor:
        """The implied score ``(r(x) - x) / sigma^2 ~ grad log p_sigma(x)`` (Tweedie)."""
        x = self._check_x(x)
        return (self.reconstruct(x) - x) / self.sigma**2

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        """The training loss ``mean |r(x + sigma n) - x|^2 / c_out^2`` (per dimension) for the
        standard normal ``noise`` ``n`` shaped like ``x``. ``dae_loss`` draws it and calls
        this."""
        x = self._check_x(x)
        if noise.shape != x.shape:
            raise ValueError(
                f"noise must be shaped like x {tuple(x.shape)}; got {tuple(noise.shape)}"
            )
        return ((self.reconstruct(x + self.sigma * noise) - x) / self.c_out).square().mean()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        steps: int | None = None,
        sampler: str | None = None,
    ) -> Tensor:
        """``[n, *event_shape]`` samples in model units by ``sampler`` (default the model's,
        ``"langevin"``; see the module docstring) with ``steps`` chain steps."""
        n = self._check_n(n)
        steps = self.sampler_steps if steps is None else check_int(steps, "steps", 0)
        sampler = sampler or self.sampler
        if sampler not in SAMPLERS:
            raise ValueError(
                f"unknown DAE sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}"
            )
        p = self._param()
        shape = (n, *self.event_shape)
        x = math.hypot(self.sigma_data, self.sigma) * randn(shape, generator, p.dtype, p.device)
        h = self.step_scale * self.sigma**2
        for t in range(steps):
            noise = randn(shape, generator, p.dtype, p.device)
            if sampler == "langevin":
                r = self.reconstruct(x)
                x = x + h * (r - x) / self.sigma**2 + math.sqrt(2 * h) * noise
            else:
                x = self.reconstruct(x + self.sigma * noise)
            if not torch.isfinite(x).all():
                raise DivergenceError(
                    f"the DAE's {sampler} chain produced NaN/inf at step {t} (sigma "
                    f"{self.sigma}, step size {h:.3g}); lower step_scale or train longer"
                )
        return self.reconstruct(x) if sampler == "langevin" else x


def dae_loss(
    model: nn.Module,
    x: Tensor,
    generator: torch.Generator | None = None,
    cond: Tensor | None = None,
) -> Tensor:
    """The denoising loss ``E |r(x + sigma n) - x|^2`` (Vincent et al. 2008), scaled by
    ``1 / c_out^2``; the trainer's objective for ``model="dae"``. Draws ``n`` here, then runs
    ``model(x, n)`` (``DAE.forward``)."""
    check_kind(model, "dae", "dae_loss")
    check_unconditional(cond, "DAE")
    return model(x, randn(tuple(x.shape), generator, x.dtype, x.device))
