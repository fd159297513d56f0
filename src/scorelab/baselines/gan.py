"""Generative adversarial networks: the non-saturating GAN (Goodfellow et al. 2014) and WGAN-GP
(Gulrajani et al. 2017), trained by the library's one-loss-per-step trainer.

A generator ``G: z ~ N(0, I) -> x`` and a discriminator (critic) ``D: x -> R`` play

- ``loss="ns"`` (Goodfellow et al. 2014, Section 3, the non-saturating variant):
  ``L_D = E softplus(-D(x)) + E softplus(D(G(z)))`` (``D`` outputs logits, so this is the
  cross-entropy of real vs fake), ``L_G = E softplus(-D(G(z)))`` (maximize ``log D(G(z))``);
  optionally with the R1 penalty ``(gamma / 2) E |grad_x D(x)|^2`` on real data (Mescheder et
  al. 2018), which makes simultaneous gradient steps locally convergent;
- ``loss="wgan-gp"`` (Gulrajani et al. 2017, Algorithm 1):
  ``L_D = E D(G(z)) - E D(x) + lambda E (|grad D(x_hat)| - 1)^2`` with
  ``x_hat = u x + (1 - u) G(z)``, ``u ~ U[0, 1]``, ``lambda = 10``, plus the drift term
  ``1e-3 E D(x)^2`` of Karras et al. 2018 (keeps the critic's values near 0);
  ``L_G = -E D(G(z))``.

**One loss, both players, one step.** The trainer takes one AdamW step on one scalar loss per
step. ``GAN.forward`` returns ``L_D + L_G`` built so that each player's gradient is its own:
``L_D`` sees the fakes *detached* (no gradient reaches ``G``), and ``L_G`` evaluates ``D``
through ``torch.func.functional_call`` with *detached copies of D's parameters* (no gradient
reaches ``D``; the gradient still flows through ``D`` into ``G``'s output). So
``grad_theta_D (L_D + L_G) = grad L_D`` and ``grad_theta_G (L_D + L_G) = grad L_G``: one step is
a *simultaneous* gradient update of both players (not the alternating updates of the NS
paper), with the same learning rate for both. The
logged loss is the sum ``L_D + L_G`` (for the NS GAN ``2 ln 2 + ln 2 ~ 2.08`` at the
equilibrium ``D = 1/2``); ``model.last_losses`` holds the two parts of the last batch.
Global gradient clipping in the trainer acts on both players' gradients together.

WGAN-GP instead updates as in its paper (Gulrajani et al. 2017, Algorithm 1): the model's
``update_phases()`` make each trainer step 5 critic updates, then one generator update, each
on a fresh minibatch and moving only its player's parameters, Adam betas (0, 0.9).

Measured: the NS loss with R1 trains with simultaneous updates (it covers a 4-mode mixture with
the right weights in 1500 steps, ``tests/baselines/test_gan.py``; see ``scorelab compare``).
WGAN-GP with simultaneous updates oscillated (moons, 3000 steps: sliced Wasserstein 0.35-0.45
with EMA weights); with the 5 critic updates it reaches 0.28-0.29 at 1500 steps (lr 1e-4, with
or without clipping) against 0.07 for the NS GAN at lr 2e-4, at 6x the cost per step, so
``"ns"`` is the default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from scorelab._utils import rand, randn
from scorelab.baselines._base import (
    Baseline,
    check_arch,
    check_kind,
    check_sizes,
    check_unconditional,
    decoder,
    encoder,
)
from scorelab.nets._common import check_int, seeded

LOSSES = ("ns", "wgan-gp")
OUT_ACTIVATIONS = (None, "tanh")


class _LeakyReLU(nn.LeakyReLU):
    def __init__(self) -> None:
        super().__init__(0.2)


class GAN(Baseline):
    """Generator and discriminator (MLPs for vectors, small conv nets for images).

    The discriminator has no batch normalization (the gradient penalties are per example);
    it uses LeakyReLU(0.2). ``out_activation="tanh"`` bounds the generator's output to
    (-1, 1) (for data scaled to [-1, 1], such as the digits). ``r1_gamma`` is the R1 weight
    of the NS loss, ``gp_weight`` and ``drift`` the penalty weights of WGAN-GP.
    """

    kind = "gan"

    def __init__(
        self,
        event_shape: Sequence[int],
        latent_dim: int = 8,
        arch: str = "mlp",
        hidden: int = 128,
        depth: int = 3,
        channels: int = 32,
        loss: str = "ns",
        out_activation: str | None = None,
        r1_gamma: float = 0.1,
        gp_weight: float = 10.0,
        drift: float = 1e-3,
        n_critic: int = 5,
        seed: int = 0,
    ) -> None:
        super().__init__(event_shape)
        shape = self.event_shape
        check_arch(arch, shape)
        check_sizes(hidden, depth, channels, latent_dim)
        if loss not in LOSSES:
            raise ValueError(f"unknown GAN loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if out_activation not in OUT_ACTIVATIONS:
            raise ValueError(f"out_activation must be None or 'tanh'; got {out_activation!r}")
        for name, value in (("r1_gamma", r1_gamma), ("gp_weight", gp_weight), ("drift", drift)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0; got {value!r}")
        self.latent_dim = latent_dim
        self.loss = loss
        self.out_activation = out_activation
        self.r1_gamma, self.gp_weight, self.drift = float(r1_gamma), float(gp_weight), float(drift)
        self.n_critic = check_int(n_critic, "n_critic")
        self._config = dict(
            latent_dim=latent_dim, arch=arch, hidden=hidden, depth=depth, channels=channels,
            loss=loss, out_activation=out_activation, r1_gamma=r1_gamma, gp_weight=gp_weight,
            drift=drift, n_critic=n_critic, seed=seed,
        )  # fmt: skip
        with seeded(seed):
            self.generator = decoder(arch, latent_dim, shape, hidden, depth, channels)
            self.discriminator = nn.Sequential(
                encoder(arch, shape, 1, hidden, depth, channels, _LeakyReLU), nn.Flatten(0)
            )
        self.last_losses: dict[str, Tensor] = {}

    def update_phases(self) -> list[dict] | None:
        """How the trainer updates the players. WGAN-GP: the critic ``n_critic`` times, then
        the generator once, Adam betas (0, 0.9) (Gulrajani et al. 2017, Algorithm 1), each
        update on a fresh minibatch; NS: ``None``, one simultaneous update of both."""
        if self.loss != "wgan-gp":
            return None
        betas = (0.0, 0.9)
        return [
            {"name": "critic", "params": list(self.discriminator.parameters()),
             "repeats": self.n_critic, "betas": betas},
            {"name": "generator", "params": list(self.generator.parameters()), "repeats": 1,
             "betas": betas},
        ]  # fmt: skip

    def generate(self, z: Tensor) -> Tensor:
        """``G(z)``: ``[batch, latent_dim] -> [batch, *event_shape]``."""
        out = self.generator(z)
        return torch.tanh(out) if self.out_activation == "tanh" else out

    def discriminate(self, x: Tensor) -> Tensor:
        """``D(x)`` ``[batch]``: logits (NS) or critic values (WGAN-GP)."""
        return self.discriminator(x)

    def _frozen_discriminate(self, x: Tensor) -> Tensor:
        """``D(x)`` with D's parameters treated as constants: gradients reach ``x`` only."""
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        frozen.update(dict(self.discriminator.named_buffers()))
        return functional_call(self.discriminator, frozen, (x,))

    def _input_grad(self, x: Tensor) -> Tensor:
        """``grad_x D(x)`` per example, flattened ``[batch, d]``, differentiable in D's
        parameters when grad mode is on (for the penalties)."""
        create = torch.is_grad_enabled()
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.discriminate(xg).sum(), xg, create_graph=create)
        return g.reshape(g.shape[0], -1)

    def forward(self, x: Tensor, z: Tensor, u: Tensor | None = None) -> Tensor:
        """``L_D + L_G`` of one minibatch (see the module docstring) for latents ``z``
        ``[batch, latent_dim]`` (and, for WGAN-GP, interpolation weights ``u`` ``[batch]`` in
        [0, 1]): one scalar whose gradient is ``grad L_D`` for the discriminator and
        ``grad L_G`` for the generator. ``gan_loss`` draws the noise and calls this."""
        x = self._check_x(x)
        b = x.shape[0]
        if z.shape != (b, self.latent_dim):
            raise ValueError(f"z must be [{b}, {self.latent_dim}]; got {tuple(z.shape)}")
        fake = self.generate(z)
        d_real = self.discriminate(x)
        d_fake = self.discriminate(fake.detach())
        d_fake_for_g = self._frozen_discriminate(fake)
        if self.loss == "ns":
            loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            if self.r1_gamma > 0:
                loss_d = loss_d + 0.5 * self.r1_gamma * self._input_grad(x).square().sum(1).mean()
            loss_g = F.softplus(-d_fake_for_g).mean()
        else:
            if u is None or u.shape != (b,):
                raise ValueError(f"WGAN-GP needs u, [{b}] uniform interpolation weights")
            u = u.reshape((b,) + (1,) * (x.ndim - 1))
            x_hat = u * x + (1 - u) * fake.detach()
            gp = (self._input_grad(x_hat).norm(dim=1) - 1).square().mean()
            loss_d = d_fake.mean() - d_real.mean() + self.gp_weight * gp
            loss_d = loss_d + self.drift * d_real.square().mean()
            loss_g = -d_fake_for_g.mean()
        self.last_losses = {"discriminator": loss_d.detach(), "generator": loss_g.detach()}
        return loss_d + loss_g

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``[n, *event_shape]`` draws ``G(z)``, ``z ~ N(0, I)``, in model units."""
        n = self._check_n(n)
        p = self._param()
        return self.generate(randn((n, self.latent_dim), generator, p.dtype, p.device))


def gan_loss(
    model: nn.Module,
    x: Tensor,
    generator: torch.Generator | None = None,
    cond: Tensor | None = None,
) -> Tensor:
    """``L_D + L_G`` for simultaneous updates of both players (NS GAN, Goodfellow et al. 2014,
    or WGAN-GP, Gulrajani et al. 2017, as ``model.loss`` says); the trainer's objective for
    ``model="gan"``. Draws the noise here, then runs ``model(x, z, u)`` (``GAN.forward``)."""
    check_kind(model, "gan", "gan_loss")
    check_unconditional(cond, "GAN")
    b = x.shape[0]
    z = randn((b, model.latent_dim), generator, x.dtype, x.device)
    u = rand((b,), generator, x.dtype, x.device) if model.loss == "wgan-gp" else None
    return model(x, z, u)
