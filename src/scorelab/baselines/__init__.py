"""The classical alternatives, on the same footing as score models: a VAE, a GAN and a
denoising autoencoder, trained by the same trainer, saved in the same checkpoints, sampled by
the same ``scorelab sample`` and compared by the same metrics (``scorelab compare``).

>>> from scorelab.baselines import VAE, GAN, DAE, from_config, vae_loss
>>> vae = VAE((2,), latent_dim=2)
>>> loss = vae_loss(vae, x, generator)             # -ELBO, nats per example: the training loss
>>> vae.log_likelihood(x, k=100)                   # IWAE_100 bound on log p(x), nats [batch]
>>> gan = GAN((1, 8, 8), arch="conv", loss="wgan-gp")
>>> gan.sample(64, generator=torch.Generator().manual_seed(0))   # model units
>>> same = from_config(gan.config())               # rebuild (weights travel separately)

Every model is an ``nn.Module`` with ``kind``, ``config()``, ``event_shape``,
``sample(n, generator)`` and ``forward(x, *noise) -> loss``; the trainer's objectives
``loss(model, x, generator, cond=None)`` are ``vae_loss``, ``gan_loss`` and ``dae_loss``
(``objective(kind)``): they draw the noise and call the model. ``sample(model, n)`` returns a
``SampleResult`` like ``scorelab.diffusion.sample``; ``mode_coverage`` measures mode dropping
on data with known modes.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from scorelab import families
from scorelab.baselines._base import Baseline, unwrap
from scorelab.baselines.coverage import ModeCoverage, mode_coverage
from scorelab.baselines.dae import DAE, dae_loss
from scorelab.baselines.gan import GAN, gan_loss
from scorelab.baselines.vae import VAE, vae_loss
from scorelab.data import quantization_step
from scorelab.diffusion.api import SampleResult
from scorelab.progress import progress as progress_counter

KINDS: dict[str, type[Baseline]] = {"vae": VAE, "gan": GAN, "dae": DAE}
LOSSES: dict[str, Callable[..., Tensor]] = {"vae": vae_loss, "gan": gan_loss, "dae": dae_loss}
# the trainer's ``net`` choice -> the baselines' architecture
NET_ARCH = {"mlp": "mlp", "unet": "conv"}
# the DAE's default noise level, relative to the data's std
DAE_SIGMA_RATIO = 0.5


def is_baseline(model: object) -> bool:
    """True for a VAE, GAN or DAE (also inside a DDP or ``torch.compile`` wrapper)."""
    return isinstance(model, nn.Module) and isinstance(unwrap(model), Baseline)


def is_baseline_config(config: object) -> bool:
    """True for a dict written by a baseline's ``config()`` (it has a ``"kind"`` key)."""
    return isinstance(config, dict) and "kind" in config


def _check_kind(kind: object) -> type[Baseline]:
    if kind not in KINDS:
        raise ValueError(f"unknown baseline kind {kind!r}; choose one of {', '.join(KINDS)}")
    return KINDS[kind]  # type: ignore[index]


def build(kind: str, event_shape: tuple[int, ...], **kwargs: Any) -> Baseline:
    """``KINDS[kind](event_shape, **kwargs)``, with unknown arguments named in the error."""
    cls = _check_kind(kind)
    try:
        return cls(event_shape, **kwargs)
    except TypeError as err:
        accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise ValueError(
            f"bad parameters for baseline {kind!r}: {err}; it accepts {', '.join(accepted[1:])}"
        ) from err


def from_config(config: dict[str, Any]) -> Baseline:
    """Rebuild a baseline from its ``config()`` (freshly initialized; load weights after)."""
    if not is_baseline_config(config):
        raise ValueError(
            "config lacks 'kind'; pass the dict returned by a baseline's config() (score models "
            "are rebuilt by scorelab.nets.from_config)"
        )
    cfg = dict(config)
    kind = cfg.pop("kind")
    try:
        event_shape = tuple(cfg.pop("event_shape"))
    except KeyError as err:
        raise ValueError("baseline config lacks 'event_shape'") from err
    return build(kind, event_shape, **cfg)


def build_for_data(kind: str, data: Any, *, net: str = "mlp", seed: int = 0, **kwargs: Any):
    """A baseline sized for ``data`` (a ``scorelab.data.Dataset``) with data-driven defaults:
    ``net`` "mlp" (vectors, or flattened images) or "unet" (a small conv net for images);
    the VAE dequantizes discrete data (``quantization_step``), the GAN ends in ``tanh`` for
    data scaled to [-1, 1], the DAE takes ``sigma_data`` from the data and
    ``sigma = DAE_SIGMA_RATIO * sigma_data``. ``kwargs`` override these."""
    cls = _check_kind(kind)
    if net not in NET_ARCH:
        raise ValueError(
            f"net {net!r} has no {kind.upper()} counterpart; choose mlp (vectors) or unet "
            "(a small conv net for images)"
        )
    shape = tuple(data.event_shape)
    kwargs.setdefault("arch", NET_ARCH[net])
    image = kwargs["arch"] == "conv"
    if cls is VAE:
        kwargs.setdefault("latent_dim", 16 if image else min(math.prod(shape), 16))
        kwargs.setdefault("dequantize", quantization_step(data.x))
    elif cls is GAN:
        kwargs.setdefault("latent_dim", 32 if image else 8)
        if data.normalization.kind == "unit_range":
            kwargs.setdefault("out_activation", "tanh")
    else:
        kwargs.setdefault("sigma_data", round(float(data.x.std()), 4))
        kwargs.setdefault("sigma", round(DAE_SIGMA_RATIO * kwargs["sigma_data"], 4))
    kwargs.setdefault("seed", seed)
    return build(kind, shape, **kwargs)


def objective(kind: str) -> Callable[..., Tensor]:
    """The trainer's ``loss(model, x, generator, cond=None)`` for a baseline kind."""
    _check_kind(kind)
    return LOSSES[kind]


def sample(
    model: nn.Module,
    n: int,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 10_000,
    progress: bool | None = None,
) -> SampleResult:
    """``n`` samples of a baseline (model units, on the CPU) as a ``SampleResult``, like
    ``scorelab.diffusion.sample``: ``nfe`` is the network evaluations per sample (1 for the
    VAE decoder and the GAN generator, the chain length + 1 for the DAE)."""
    if not is_baseline(model):
        raise ValueError(
            f"model must be a VAE, GAN or DAE from scorelab.baselines; got {type(model).__name__}"
        )
    inner = unwrap(model)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int (number of samples); got {n!r}")
    out, start = [], time.perf_counter()
    batches = math.ceil(n / batch_size)
    with progress_counter(batches, inner.kind, unit="batch", show=progress) as bar:
        for b in range(batches):
            m = min(batch_size, n - b * batch_size)
            out.append(inner.sample(m, generator=generator).cpu())
            bar.update(1)
    return SampleResult(
        samples=torch.cat(out),
        nfe=inner.nfe,
        sigmas=torch.empty(0),
        sampler=inner.kind,
        wall_time=time.perf_counter() - start,
    )


def _family(kind: str) -> families.ModelFamily:
    """The trainer's view of baseline ``kind`` (``scorelab.families``): built for the data by
    ``build_for_data`` from ``TrainConfig.net``, ``seed`` and ``net_kwargs``, trained by
    ``objective(kind)``, sampled by ``sample``."""

    def build_from_config(cfg: Any, data: Any) -> Baseline:
        if cfg.conditional:
            raise ValueError(
                f"conditional training is unsupported for model {kind!r}: the baselines "
                "are unconditional; drop --conditional (or use model 'score')"
            )
        return build_for_data(kind, data, net=cfg.net, seed=cfg.seed, **cfg.net_kwargs)

    def training_loss(cfg: Any, data: Any) -> Callable[..., Tensor]:
        fields = getattr(type(cfg), "__dataclass_fields__", {})
        default = fields["objective"].default if "objective" in fields else cfg.objective
        if cfg.objective != default:
            raise ValueError(
                f"objective {cfg.objective!r} trains score models; model {kind!r} has its "
                f"own loss: leave objective at its default"
            )
        if cfg.objective_kwargs:
            raise ValueError(
                f"model {kind!r} takes its loss settings as model arguments: move "
                f"{sorted(cfg.objective_kwargs)} from objective_kwargs to net_kwargs"
            )
        return objective(kind)

    def draw(model: nn.Module, n: int, *, generator: torch.Generator | None = None,
             **options: Any) -> SampleResult:  # fmt: skip
        return sample(model, n, generator=generator, progress=options.get("progress"))

    return families.ModelFamily(kind, build_from_config, training_loss, from_config, draw)


for _kind in KINDS:  # the trainer finds the baselines by name through this registry
    families.register(_family(_kind))


__all__ = [
    "DAE",
    "GAN",
    "KINDS",
    "LOSSES",
    "VAE",
    "Baseline",
    "ModeCoverage",
    "build",
    "build_for_data",
    "dae_loss",
    "from_config",
    "gan_loss",
    "is_baseline",
    "is_baseline_config",
    "mode_coverage",
    "objective",
    "sample",
    "vae_loss",
]
