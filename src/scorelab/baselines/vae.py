"""The variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014) and its
importance-weighted bound (Burda et al. 2016).

Generative model ``z ~ N(0, I_L)``, ``x | z ~ p_theta(x | z)``; Gaussian encoder
``q_phi(z | x) = N(mu(x), diag exp(logvar(x)))`` sampled by reparameterization
``z = mu + exp(logvar / 2) * eps``. The evidence lower bound (ELBO) of one example is

    ELBO(x) = E_q[log p_theta(x | z)] - KL(q_phi(z | x) || N(0, I))  <=  log p_theta(x),

with the KL in closed form ``1/2 sum(mu^2 + var - 1 - log var)``. The IWAE bound with ``K``
importance samples ``z_k ~ q(z | x)``,

    IWAE_K(x) = E log (1/K) sum_k p_theta(x, z_k) / q_phi(z_k | x),

equals the ELBO at ``K = 1``, is nondecreasing in ``K`` and tends to ``log p_theta(x)``
(Burda et al. 2016, Theorem 1): ``vae.log_likelihood(x, k=...)`` is the log-likelihood estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scorelab._utils import LOG_2PI, rand, randn
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

LIKELIHOODS = ("gaussian", "bernoulli")
DECODER_STDS = ("calibrated", "learned")
CALIBRATION_MOMENTUM = 0.01  # running average of the calibrated decoder variance


class VAE(Baseline):
    """A VAE for vectors (``arch="mlp"``) or small images (``arch="conv"``).

    ``likelihood="gaussian"``: ``p(x | z) = N(m(z), diag s^2)`` for continuous data in model
    units, with one std per dimension, independent of ``z`` (a ``z``-dependent variance can
    collapse onto constant pixels and make the likelihood unbounded), floored at ``min_std``:

    - ``decoder_std="calibrated"`` (default): the sigma-VAE of Rybkin et al. 2021. Each training
      batch uses the variance that maximizes its ELBO in closed form, ``s_j^2 = mean_batch
      (x_j - m_j(z))^2``; evaluation and sampling use a running average of it (the buffer
      ``calibrated_var``, momentum ``0.01``). By the envelope theorem the gradient is that of
      the ELBO at the optimal ``s``; no learning rate has to move ``s`` from 1 to 0.1.
    - ``decoder_std="learned"``: ``s = min_std + softplus(raw)`` learned by gradient descent
      (slow: ``raw`` moves about one learning rate per step);
    - a float: fixed ``s``.

    ``likelihood="bernoulli"``:
    ``p(x | z) = prod Bernoulli(t; sigmoid(logits(z)))`` on ``t = (x + 1) / 2``, exact for
    binary data in {-1, 1} (for gray levels it is the usual cross-entropy surrogate, not a
    density). ``beta`` weights the KL (beta-VAE, Higgins et al. 2017; 1 gives the ELBO).
    ``dequantize`` (a bin width in model units, or None) adds uniform noise ``U(-b/2, b/2)``
    to the training batch (Theis et al. 2016), so a Gaussian decoder cannot put unbounded
    density on discrete values; it is set from the data by ``scorelab.baselines.build``.
    """

    kind = "vae"

    def __init__(
        self,
        event_shape: Sequence[int],
        latent_dim: int = 2,
        arch: str = "mlp",
        hidden: int = 128,
        depth: int = 2,
        channels: int = 32,
        likelihood: str = "gaussian",
        decoder_std: str | float = "calibrated",
        min_std: float = 1e-3,
        beta: float = 1.0,
        dequantize: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(event_shape)
        shape = self.event_shape
        check_arch(arch, shape)
        check_sizes(hidden, depth, channels, latent_dim)
        if likelihood not in LIKELIHOODS:
            raise ValueError(
                f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}"
            )
        fixed = isinstance(decoder_std, int | float) and not isinstance(decoder_std, bool)
        if decoder_std not in DECODER_STDS and not (fixed and decoder_std > 0):
            raise ValueError(
                f"decoder_std must be 'calibrated', 'learned' or a positive number; got "
                f"{decoder_std!r}"
            )
        if not min_std > 0:
            raise ValueError(f"min_std must be > 0; got {min_std!r}")
        if not beta > 0:
            raise ValueError(f"beta must be > 0 (1 gives the ELBO); got {beta!r}")
        if dequantize is not None and not dequantize > 0:
            raise ValueError(f"dequantize must be a bin width > 0 or None; got {dequantize!r}")
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.min_std = float(min_std)
        self.beta = float(beta)
        self.dequantize = None if dequantize is None else float(dequantize)
        self._config = dict(
            latent_dim=latent_dim, arch=arch, hidden=hidden, depth=depth, channels=channels,
            likelihood=likelihood, decoder_std=decoder_std, min_std=min_std, beta=beta,
            dequantize=dequantize, seed=seed,
        )  # fmt: skip
        with seeded(seed):
            self.encoder = encoder(arch, shape, 2 * latent_dim, hidden, depth, channels)
            self.decoder = decoder(arch, latent_dim, shape, hidden, depth, channels)
        self.decoder_std = decoder_std
        gaussian = likelihood == "gaussian"
        if gaussian and decoder_std == "learned":
            # softplus(0.5413) = 1: start at unit std, the scale of standardized data
            self.raw_std = nn.Parameter(torch.full(shape, 0.5413))
        else:
            self.register_parameter("raw_std", None)
        if gaussian and decoder_std == "calibrated":
            self.register_buffer("calibrated_var", torch.ones(shape))
        else:
            self.calibrated_var = None

    # -- the two halves ---------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of ``q(z | x)``, each ``[batch, latent_dim]``."""
        h = self.encoder(x)
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        """The decoder's output for ``z``: the mean ``m(z)`` (Gaussian) or the logits
        (Bernoulli), ``[batch, *event_shape]``."""
        return self.decoder(z)

    def decoder_scale(self) -> Tensor:
        """The Gaussian decoder's std ``s`` per dimension, ``[*event_shape]``."""
        if self.likelihood != "gaussian":
            raise ValueError("decoder_scale applies to likelihood='gaussian' only")
        if self.raw_std is not None:
            return self.min_std + F.softplus(self.raw_std)
        if self.calibrated_var is not None:
            return self.calibrated_var.sqrt().clamp_min(self.min_std)
        p = self._param()
        return torch.full(self.event_shape, float(self.decoder_std), dtype=p.dtype, device=p.device)

    def log_px_given_z(self, x: Tensor, out: Tensor, scale: Tensor | None = None) -> Tensor:
        """``log p(x | z)`` per example ``[batch]`` from the decoder output ``out`` (Gaussian:
        with std ``scale``, default ``decoder_scale()``)."""
        b = x.shape[0]
        if self.likelihood == "gaussian":
            s = self.decoder_scale() if scale is None else scale
            lp = -0.5 * ((x - out) / s) ** 2 - s.log() - 0.5 * LOG_2PI
        else:
            target = ((x + 1) / 2).clamp(0, 1)
            lp = -F.binary_cross_entropy_with_logits(out, target, reduction="none")
        return lp.reshape(b, -1).sum(-1)

    # -- bounds -----------------------------------------------------------------------------
    def elbo(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One-sample reparameterized ELBO per example ``[batch]`` (nats):
        ``log p(x | z) - KL(q(z | x) || N(0, I))``, ``z = mu + sigma eps``."""
        x = self._check_x(x)
        eps = randn((x.shape[0], self.latent_dim), generator, x.dtype, x.device)
        rec, kl = self._terms(x, eps)
        return rec - kl

    def _terms(self, x: Tensor, eps: Tensor, calibrate: bool = False) -> tuple[Tensor, Tensor]:
        """``(log p(x | z), KL(q(z | x) || N(0, I)))`` per example, ``z = mu + sigma eps``;
        with ``calibrate`` (training a calibrated decoder) at the batch's optimal std."""
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * eps
        out = self.decode(z)
        scale = None
        if calibrate and self.calibrated_var is not None:
            var = (x - out).detach().square().mean(0).clamp_min(self.min_std**2)
            if self.training:
                with torch.no_grad():
                    self.calibrated_var.lerp_(var.to(self.calibrated_var), CALIBRATION_MOMENTUM)
            scale = var.sqrt()
        rec = self.log_px_given_z(x, out, scale)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
        return rec, kl

    @torch.no_grad()
    def log_likelihood(
        self,
        x: Tensor,
        k: int = 100,
        *,
        generator: torch.Generator | None = None,
        chunk: int = 4096,
    ) -> Tensor:
        """The IWAE bound ``IWAE_k(x) = log (1/k) sum_j p(x, z_j) / q(z_j | x)``,
        ``z_j ~ q(z | x)`` (Burda et al. 2016, eq. 8), per example ``[batch]`` in nats: a
        lower bound on ``log p_theta(x)`` in expectation, tighter as ``k`` grows. ``k = 1``
        is the ELBO with the sampled (not closed-form) KL. The ``k`` draws are evaluated in
        blocks of about ``chunk`` rows."""
        x = self._check_x(x)
        check_int(k, "k")
        check_int(chunk, "chunk")
        mu, logvar = self.encode(x)
        std = (0.5 * logvar).exp()
        b, latent = mu.shape
        per = max(1, chunk // b)
        acc = torch.full((b,), -math.inf, dtype=mu.dtype, device=mu.device)
        done = 0
        while done < k:
            m = min(per, k - done)
            eps = randn((m, b, latent), generator, mu.dtype, mu.device)
            z = mu + std * eps  # [m, b, L]
            log_q = (-0.5 * eps**2 - 0.5 * logvar - 0.5 * LOG_2PI).sum(-1)
            log_prior = (-0.5 * z**2 - 0.5 * LOG_2PI).sum(-1)
            xs = x.unsqueeze(0).expand(m, *x.shape).reshape(m * b, *x.shape[1:])
            out = self.decode(z.reshape(m * b, latent))
            log_px = self.log_px_given_z(xs, out).reshape(m, b)
            w = log_px + log_prior - log_q
            acc = torch.logaddexp(acc, torch.logsumexp(w, dim=0))
            done += m
        return acc - math.log(k)

    # -- training and sampling --------------------------------------------------------------
    def forward(self, x: Tensor, eps: Tensor, u: Tensor | None = None) -> Tensor:
        """The training loss ``-mean(log p(x | z) - beta KL)`` over the batch (nats per example)
        for the reparameterization noise ``eps`` ``[batch, latent_dim]``; with ``dequantize``
        set, on ``x + dequantize * (u - 1/2)`` (``u`` uniform draws shaped like ``x``).
        ``vae_loss`` draws the noise and calls this."""
        x = self._check_x(x)
        if eps.shape != (x.shape[0], self.latent_dim):
            raise ValueError(
                f"eps must be [{x.shape[0]}, {self.latent_dim}]; got {tuple(eps.shape)}"
            )
        if self.dequantize is not None:
            if u is None or u.shape != x.shape:
                raise ValueError(
                    "this VAE dequantizes its data: pass u, uniform draws shaped like x"
                )
            x = x + self.dequantize * (u - 0.5)
        rec, kl = self._terms(x, eps, calibrate=True)
        return -(rec - self.beta * kl).mean()

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, mean: bool = False
    ) -> Tensor:
        """``[n, *event_shape]`` draws of ``x ~ p(x | z), z ~ N(0, I)`` in model units; with
        ``mean=True`` the decoder means ``E[x | z]`` instead (smoother pictures, not draws)."""
        n = self._check_n(n)
        p = self._param()
        z = randn((n, self.latent_dim), generator, p.dtype, p.device)
        out = self.decode(z)
        if self.likelihood == "gaussian":
            if mean:
                return out
            eps = randn(tuple(out.shape), generator, p.dtype, p.device)
            return out + self.decoder_scale() * eps
        prob = torch.sigmoid(out)
        if mean:
            return 2 * prob - 1
        u = rand(tuple(out.shape), generator, p.dtype, p.device)
        return 2 * (u < prob).to(p.dtype) - 1


def vae_loss(
    model: nn.Module,
    x: Tensor,
    generator: torch.Generator | None = None,
    cond: Tensor | None = None,
) -> Tensor:
    """The negative ELBO (``beta``-weighted KL) of a minibatch, nats per example; the trainer's
    objective for ``model="vae"``. Draws the noise here (one row per example, from
    ``generator``), then runs ``model(x, eps, u)`` (``VAE.forward``)."""
    check_kind(model, "vae", "vae_loss")
    check_unconditional(cond, "VAE")
    eps = randn((x.shape[0], model.latent_dim), generator, x.dtype, x.device)
    u = None if model.dequantize is None else rand(tuple(x.shape), generator, x.dtype, x.device)
    return model(x, eps, u)
