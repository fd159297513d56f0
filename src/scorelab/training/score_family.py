"""The score-model family (``TrainConfig.model == "score"``): a network of ``scorelab.nets``
exposed as a denoiser, trained by an objective of ``scorelab.diffusion.OBJECTIVES`` and sampled
by ``scorelab.diffusion.sample``. Registered with ``scorelab.families`` on import, like the
baselines; the trainer reaches it only through that registry."""

from __future__ import annotations

import math
from typing import Any

from scorelab import families
from scorelab.data import Dataset
from scorelab.diffusion.objectives import OBJECTIVES, default_sigmas
from scorelab.nets import Denoiser, build, from_config


def build_score_model(cfg: Any, data: Dataset) -> Denoiser:
    """The network and parameterization of ``cfg`` (a ``TrainConfig``), sized for ``data``."""
    kwargs = dict(cfg.net_kwargs)
    if cfg.conditional:
        if data.labels is None:
            raise ValueError(
                f"conditional training needs labelled data; {data.name} has no labels (use a "
                "labelled set such as digits, or an image folder with one sub-folder per class)"
            )
        kwargs.setdefault("num_classes", data.num_classes)
    if cfg.net == "mlp":
        kwargs.setdefault("dim", math.prod(data.event_shape))
    elif cfg.net == "unet":
        if len(data.event_shape) != 3:
            raise ValueError(
                f"net 'unet' needs images [C, H, W]; {data.name} has examples of shape "
                f"{data.event_shape}: use net 'mlp'"
            )
        kwargs.setdefault("in_channels", data.event_shape[0])
    if cfg.parameterization in ("edm", "energy"):
        kwargs.setdefault("sigma_data", round(float(data.x.std()), 4))
    kwargs.setdefault("seed", cfg.seed)
    return build(cfg.net, cfg.parameterization, **kwargs)


def score_objective(cfg: Any, data: Dataset):
    """``loss(model, x, generator, cond)`` for ``cfg.objective`` with data-driven defaults
    (NCSN's geometric sigmas and EDM's ``sigma_data`` from the data)."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(
            f"unknown objective {cfg.objective!r}; choose one of {', '.join(OBJECTIVES)}"
        )
    if cfg.objective == "esm":
        raise ValueError(
            "objective 'esm' needs the true score, which data alone does not give; use it from "
            "the API (scorelab.diffusion.esm_loss) with a known density"
        )
    kwargs = dict(cfg.objective_kwargs)
    if cfg.objective == "ncsn" and "sigmas" not in kwargs:
        kwargs["sigmas"] = default_sigmas(data.x)
    if cfg.objective == "edm":
        kwargs.setdefault("sigma_data", round(float(data.x.std()), 4))
    fn = OBJECTIVES[cfg.objective]

    def objective(model, x, generator, cond=None):
        return fn(model, x, generator=generator, cond=cond, **kwargs)

    return objective


def sample_score_model(model: Denoiser, n: int, *, generator=None, **options: Any):
    """``scorelab.diffusion.sample`` (its defaults, or ``sampler``/``nfe``/... in ``options``)."""
    from scorelab import diffusion

    return diffusion.sample(model, n, generator=generator, **options)


SCORE = families.register(
    families.ModelFamily(
        "score", build_score_model, score_objective, from_config, sample_score_model
    )
)
