"""Wrappers that turn a raw network ``F(x_in, c_noise, cond)`` into a denoiser.

Whatever the network predicts inside (a score, the noise, the clean data, an energy, a
velocity), every wrapper exposes the one contract of the library (sigma-space,
``x = x_0 + sigma n``):

- ``D(x, sigma, cond=None)``: the denoised estimate ``E[x_0 | x]``, shaped like ``x``;
- ``.score(x, sigma, cond=None) = (D - x) / sigma^2``: the score of the smoothed density (Tweedie).

``sigma`` is a float, a 0-d tensor or a ``[batch]`` tensor, every entry > 0; ``cond`` is ``None``
or ``[batch]`` integer class labels. Every wrapper conditions the network on
``c_noise = log(sigma) / 4`` (Karras et al. 2022). ``config()`` returns a JSON-serializable dict
from which :func:`from_config` rebuilds the model (the weights travel separately).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from scorelab._utils import append_dims, as_tensor, check_positive
from scorelab.nets._common import check_x
from scorelab.nets.mlp import MLP
from scorelab.nets.unet import UNet
from scorelab.tweedie import denoised_from_score, score_from_denoised


class Preconditioning(NamedTuple):
    """``D = c_skip x + c_out F(c_in x, c_noise)``: the coefficients, each shaped like sigma."""

    c_skip: Tensor
    c_out: Tensor
    c_in: Tensor
    c_noise: Tensor


def _check_sigma(sigma: float | Tensor, x: Tensor) -> Tensor:
    """``sigma`` as a ``[batch]`` tensor in ``x``'s dtype and device, every entry finite and > 0."""
    try:
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"sigma must be a number or a [batch] tensor; got {sigma!r}") from err
    batch = x.shape[0]
    if s.numel() == 1:
        s = s.reshape(()).expand(batch)
    elif s.ndim == 0 or s.shape[0] != batch or s.numel() != batch:
        raise ValueError(
            f"sigma has shape {tuple(s.shape)}; expected a scalar or one value per sample, "
            f"shape ({batch},)"
        )
    else:
        s = s.reshape(batch)
    bad = ~torch.isfinite(s) | (s <= 0)
    if bad.any():
        raise ValueError(
            f"sigma must be finite and > 0; got {s[bad][0].item()}: a denoiser is defined for "
            f"sigma > 0 only, so end sigma schedules at a small sigma_min (e.g. 0.002)"
        )
    return s


def _log_sigma_over_4(sigma: Tensor) -> Tensor:
    return sigma.log() / 4


class Denoiser(nn.Module):
    """A model exposed as a denoiser ``D(x, sigma, cond)`` and its score (Tweedie, Efron 2011).

    Subclasses implement ``_denoise`` or ``_score`` (the other follows from Tweedie) on a
    validated ``x`` and ``sigma`` ``[batch]``.
    """

    name: ClassVar[str] = ""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ValueError(f"net must be a torch.nn.Module F(x_in, c_noise, cond); got {net!r}")
        self.net = net

    @property
    def num_classes(self) -> int | None:
        """Number of class labels the network accepts (``None``: unconditional)."""
        return getattr(self.net, "num_classes", None)

    def forward(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """The denoised estimate ``D(x, sigma, cond) ~ E[x_0 | x_0 + sigma n = x]``, like x."""
        x = check_x(x)
        return self._denoise(x, _check_sigma(sigma, x), cond)

    def score(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """The score ``grad_x log p_sigma(x) = (D(x, sigma) - x) / sigma^2``, shaped like x."""
        x = check_x(x)
        return self._score(x, _check_sigma(sigma, x), cond)

    def c_noise(self, sigma: Tensor) -> Tensor:
        """Noise conditioning passed to the network: ``log(sigma) / 4`` (Karras et al. 2022)."""
        return _log_sigma_over_4(sigma)

    def _denoise(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        return denoised_from_score(x, self._score(x, sigma, cond), sigma)

    def _score(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        return score_from_denoised(x, self._denoise(x, sigma, cond), sigma)

    def _kwargs(self) -> dict[str, Any]:
        """Constructor arguments besides ``net`` (for ``config``)."""
        return {}

    def config(self) -> dict[str, Any]:
        """JSON-serializable description: ``from_config(model.config())`` rebuilds the model."""
        net_name = next((k for k, v in NETS.items() if type(self.net) is v), None)
        if net_name is None:
            raise ValueError(
                f"cannot describe a {type(self.net).__name__} network in a config: only networks "
                f"registered in scorelab.nets.NETS ({', '.join(NETS)}) can be rebuilt; add your "
                f"class to NETS and give it a config() method returning its keyword arguments"
            )
        return {
            "parameterization": self.name,
            "net": net_name,
            "net_kwargs": self.net.config(),
            **self._kwargs(),
        }


class _Preconditioned(Denoiser):
    """``D = c_skip x + c_out F(c_in x, c_noise, cond)`` with coefficients from ``coefficients``."""

    def _coefficients(self, sigma: Tensor) -> Preconditioning:
        raise NotImplementedError

    def coefficients(self, sigma: float | Tensor) -> Preconditioning:
        """``(c_skip, c_out, c_in, c_noise)`` at ``sigma`` (any shape, entries > 0)."""
        s = as_tensor(sigma, "sigma")
        check_positive(s, "sigma")
        return self._coefficients(s)

    def _net(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> tuple[Tensor, Preconditioning]:
        """``F(c_in x, c_noise, cond)`` and the coefficients (shaped to broadcast over ``x``)."""
        c = self._coefficients(sigma)
        out = self.net(append_dims(c.c_in, x.ndim) * x, c.c_noise, cond)
        if out.shape != x.shape:
            raise ValueError(
                f"the network returns shape {tuple(out.shape)} for x of shape {tuple(x.shape)}; "
                f"{type(self).__name__} needs an output shaped like its input (e.g. MLP with "
                f"out_dim=None)"
            )
        return out, Preconditioning(*(append_dims(t, x.ndim) for t in c[:3]), c.c_noise)

    def _denoise(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        out, c = self._net(x, sigma, cond)
        return c.c_skip * x + c.c_out * out


class ScoreDenoiser(_Preconditioned):
    """Direct score network ``s(x, sigma) = F(x, c_noise) / sigma`` (NCSNv2, Song & Ermon 2020),
    ``D = x + sigma^2 s``.

    The input is not rescaled (``c_in = 1``), as in NCSN; ``c_skip = 1``, ``c_out = sigma``.
    """

    name: ClassVar[str] = "score"

    def _coefficients(self, sigma: Tensor) -> Preconditioning:
        one = torch.ones_like(sigma)
        return Preconditioning(one, sigma, one, self.c_noise(sigma))

    def _score(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        out, _ = self._net(x, sigma, cond)
        return out / append_dims(sigma, x.ndim)


class EpsDenoiser(_Preconditioned):
    """Noise prediction ``D = x - sigma F(c_in x, c_noise)``, ``c_in = 1 / sqrt(sigma^2 + 1)``: the
    DDPM epsilon-parameterization (Ho et al. 2020) in sigma-space (Karras et al. 2022, Table 1).

    ``c_in x`` is the VP-scaled input ``x_t = x / sqrt(1 + sigma^2)``; the score is ``-F / sigma``.
    ``c_noise = log(sigma) / 4`` replaces DDPM's integer timestep, so no schedule is needed.
    """

    name: ClassVar[str] = "eps"

    def _coefficients(self, sigma: Tensor) -> Preconditioning:
        return Preconditioning(
            torch.ones_like(sigma), -sigma, (sigma**2 + 1).rsqrt(), self.c_noise(sigma)
        )

    def _score(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        out, _ = self._net(x, sigma, cond)
        return -out / append_dims(sigma, x.ndim)


def _edm_coefficients(sigma: Tensor, sd: float, c_noise: Tensor) -> Preconditioning:
    """Karras et al. 2022, Table 1 (EDM column)."""
    var = sigma**2 + sd**2
    return Preconditioning(sd**2 / var, sigma * sd * var.rsqrt(), var.rsqrt(), c_noise)


class EDMDenoiser(_Preconditioned):
    """EDM preconditioning (Karras et al. 2022): ``D = c_skip x + c_out F(c_in x, c_noise)`` with
    ``c_skip = sd^2/(sigma^2+sd^2)``, ``c_out = sigma sd/sqrt(sigma^2+sd^2)``,
    ``c_in = 1/sqrt(sigma^2+sd^2)``, ``c_noise = log(sigma)/4``, ``sd = sigma_data``.
    """

    name: ClassVar[str] = "edm"

    def __init__(self, net: nn.Module, sigma_data: float = 0.5) -> None:
        super().__init__(net)
        check_positive(sigma_data, "sigma_data")
        self.sigma_data = float(sigma_data)

    def _coefficients(self, sigma: Tensor) -> Preconditioning:
        return _edm_coefficients(sigma, self.sigma_data, self.c_noise(sigma))

    def _kwargs(self) -> dict[str, Any]:
        return {"sigma_data": self.sigma_data}


class VelocityDenoiser(_Preconditioned):
    """Velocity prediction on the linear path ``x_t = (1 - t) x_0 + t n`` (rectified flow, Liu
    et al. 2023; flow matching, Lipman et al. 2023): the network gives ``v = n - x_0`` from
    ``x_t`` and the time, and ``D = x_t - t F``.

    In sigma-space ``x = x_0 + sigma n = x_t / (1 - t)`` with ``t = sigma / (1 + sigma)``, so
    ``c_in = 1 / (1 + sigma)`` (the input is ``x_t``), ``c_skip = 1 / (1 + sigma)``, ``c_out =
    -sigma / (1 + sigma) = -t``; conversely ``v = (x_t - D) / t`` and the score is
    ``(D - x) / sigma^2``. ``c_noise = log(sigma) / 4 = logit(t) / 4`` as for every wrapper.
    """

    name: ClassVar[str] = "velocity"

    def _coefficients(self, sigma: Tensor) -> Preconditioning:
        c = (1 + sigma).reciprocal()
        return Preconditioning(c, -sigma * c, c, self.c_noise(sigma))

    def velocity(self, x_t: Tensor, t: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """The network's velocity ``F(x_t, c_noise(t / (1 - t)))``, ``x_t`` in flow coordinates
        and ``t`` in (0, 1) (a number or ``[batch]``)."""
        x_t = check_x(x_t)
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device)
        if not ((t > 0) & (t < 1)).all():
            raise ValueError(f"t must lie in (0, 1) (t = 1 is pure noise, sigma = inf); got {t}")
        sigma = _check_sigma(t / (1 - t), x_t)
        out, _ = self._net(x_t * append_dims(1 + sigma, x_t.ndim), sigma, cond)  # c_in x = x_t
        return out


class EnergyDenoiser(Denoiser):
    """A conservative model: ``score = -grad_x u(x, sigma)`` by autograd, with the energy
    ``u = |x|^2 / (2 (sigma^2 + sd^2)) + (sd / sigma) phi(c_in x, c_noise, cond)``.

    The first term is the energy of ``N(0, (sigma^2 + sd^2) I)`` (data of scale ``sd =
    sigma_data`` smoothed by the noise); the second is learned, with EDM's ``c_in`` and
    ``c_noise`` (Karras et al. 2022). Then ``D = c_skip x + c_out G(c_in x)`` with
    ``G = -grad phi``: exactly :class:`EDMDenoiser` with a conservative field ``G`` in place of
    ``F``, so at ``phi = 0`` (a zero-initialized network) both start from ``D = c_skip x``.

    The scalar ``phi`` is the network output itself when it is one number per sample (e.g.
    ``MLP(out_dim=1)``); a network whose output ``F`` is shaped like its input (a U-Net) is
    reduced to ``phi = |x_in - F|^2 / 2 - |x_in|^2 / 2 = <F, F/2 - x_in>``: the energy
    ``|x - f(x)|^2 / 2`` of Salimans & Ho 2021 ("Should EBMs model the energy or the score?")
    minus its ``F``-free part, which the Gaussian term already supplies.

    The score is built with ``create_graph=True`` whenever grad mode is on, so a loss on ``D`` or
    the score trains the network (double backward); under ``torch.no_grad()`` (sampling) no
    graph is kept. The batch must be independent samples (no batch-mixing layers). A parameter
    that only shifts ``u`` by a constant (the output bias of a scalar network) gets no gradient.
    """

    name: ClassVar[str] = "energy"

    def __init__(self, net: nn.Module, sigma_data: float = 0.5) -> None:
        super().__init__(net)
        check_positive(sigma_data, "sigma_data")
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: float | Tensor) -> Preconditioning:
        """EDM's ``(c_skip, c_out, c_in, c_noise)`` at ``sigma`` (see the class docstring)."""
        s = as_tensor(sigma, "sigma")
        check_positive(s, "sigma")
        return _edm_coefficients(s, self.sigma_data, self.c_noise(s))

    def energy(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """The energy ``u(x, sigma)`` ``[batch]``, with ``p_sigma(x) ~ exp(-u)`` up to a constant
        in ``x``."""
        x = check_x(x)
        return self._energy(x, _check_sigma(sigma, x), cond)

    def _energy(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        sd = self.sigma_data
        c = _edm_coefficients(sigma, sd, self.c_noise(sigma))
        x_in = append_dims(c.c_in, x.ndim) * x
        out = self.net(x_in, c.c_noise, cond)
        batch = x.shape[0]
        if out.shape == x.shape:
            phi = (out * (0.5 * out - x_in)).reshape(batch, -1).sum(1)
        elif out.numel() == batch and out.shape[0] == batch:
            phi = out.reshape(batch)
        else:
            raise ValueError(
                f"the network returns shape {tuple(out.shape)} for x of shape {tuple(x.shape)}; "
                f"EnergyDenoiser needs one number per sample (e.g. MLP with out_dim=1) or an "
                f"output shaped like x"
            )
        prior = 0.5 * x.reshape(batch, -1).square().sum(1) / (sigma**2 + sd**2)
        return prior + sd / sigma * phi

    def _score(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "EnergyDenoiser computes its score by autograd, which torch.inference_mode() "
                "turns off; sample under torch.no_grad() instead"
            )
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if x.requires_grad:
                xg = x
            else:  # an inference tensor (made under inference_mode) cannot require grad
                xg = (x.clone() if x.is_inference() else x.detach()).requires_grad_(True)
            u = self._energy(xg, sigma, cond)
            (grad,) = torch.autograd.grad(u.sum(), xg, create_graph=create_graph)
        return -grad

    def _kwargs(self) -> dict[str, Any]:
        return {"sigma_data": self.sigma_data}


NETS: dict[str, type[nn.Module]] = {"mlp": MLP, "unet": UNet}
PARAMETERIZATIONS: dict[str, type[Denoiser]] = {
    "score": ScoreDenoiser,
    "energy": EnergyDenoiser,
    "eps": EpsDenoiser,
    "edm": EDMDenoiser,
    "velocity": VelocityDenoiser,
}


def build(net: str, parameterization: str, **kwargs: Any) -> Denoiser:
    """Build ``PARAMETERIZATIONS[parameterization](NETS[net](**net_kwargs), **wrapper_kwargs)``.

    Keyword arguments of the wrapper (``sigma_data``) go to it, the rest to the network. For
    ``parameterization="energy"`` the MLP defaults to ``out_dim=1`` (a scalar energy).
    """
    if net not in NETS:
        raise ValueError(f"unknown net {net!r}; choose one of {', '.join(NETS)}")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"unknown parameterization {parameterization!r}; choose one of "
            f"{', '.join(PARAMETERIZATIONS)}"
        )
    wrapper = PARAMETERIZATIONS[parameterization]
    own = set(inspect.signature(wrapper.__init__).parameters) - {"self", "net"}
    wrapper_kwargs = {k: v for k, v in kwargs.items() if k in own}
    net_kwargs = {k: v for k, v in kwargs.items() if k not in own}
    if parameterization == "energy" and net == "mlp":
        net_kwargs.setdefault("out_dim", 1)
    try:
        model = NETS[net](**net_kwargs)
    except TypeError as err:
        raise ValueError(f"bad parameters for net {net!r}: {err}") from err
    return wrapper(model, **wrapper_kwargs)


def from_config(config: dict[str, Any]) -> Denoiser:
    """Rebuild a model from ``Denoiser.config()`` (freshly initialized; load weights after)."""
    cfg = dict(config)
    try:
        net, parameterization = cfg.pop("net"), cfg.pop("parameterization")
    except KeyError as err:
        raise ValueError(
            f"config lacks {err}; pass the dict returned by Denoiser.config(), with keys "
            f"'parameterization', 'net', 'net_kwargs'"
        ) from err
    net_kwargs = cfg.pop("net_kwargs", {})
    return build(net, parameterization, **net_kwargs, **cfg)
