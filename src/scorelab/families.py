"""Model families: how the trainer builds, trains and rebuilds a kind of model, without knowing it.

A family is a ``ModelFamily`` record of four functions (build from the training config, the
loss, rebuild from a saved model config, sample). Families register themselves on import
(``register``); the trainer asks for one by the name in ``TrainConfig.model`` (``get``), which
imports the module that registers it on first use. This module sits at the bottom of the
layers (it imports no other scorelab package), so a family from any layer, or from outside
scorelab, can register here, and the trainer imports no family.

>>> from scorelab import families
>>> families.get("vae").build(cfg, data)          # imports scorelab.baselines on first use
>>> families.register(families.ModelFamily("flow", build, objective, from_config, sample))

Third-party packages may instead declare an entry point in the group ``scorelab.families``
whose value is a module that calls ``register`` on import; it is imported when its name is
asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GROUP = "scorelab.families"  # the entry-point group of third-party families


@dataclass(frozen=True)
class ModelFamily:
    """One kind of model, as the trainer and the sampling commands use it.

    ``build(cfg, data)``: a freshly initialized ``nn.Module`` for the training config ``cfg``
    (a ``TrainConfig``) and the ``scorelab.data.Dataset`` ``data``; its ``config()`` is a
    JSON-serializable dict that ``from_config`` turns back into the same architecture.
    ``objective(cfg, data)``: the training loss ``loss(model, x, generator, cond) -> scalar``.
    ``from_config(config)``: rebuild the module from ``config()`` (weights load afterwards).
    ``sample(model, n, *, generator, **options)``: a ``scorelab.diffusion.SampleResult`` of
    ``n`` samples in model units (options such as ``sampler`` or ``nfe`` a family may ignore).
    Bad settings raise ``ValueError`` naming the config key and the fix.
    """

    name: str  # the value of TrainConfig.model (--model) that selects this family
    build: Callable[[Any, Any], Any]
    objective: Callable[[Any, Any], Callable[..., Any]]
    from_config: Callable[[dict], Any]
    sample: Callable[..., Any]


_REGISTRY: dict[str, ModelFamily] = {}
# the built-in families and the module whose import registers each (imported on first use);
# names only, so importing this module imports no family
BUILTIN: dict[str, str] = {
    "score": "scorelab.training.score_family",
    "vae": "scorelab.baselines",
    "gan": "scorelab.baselines",
    "dae": "scorelab.baselines",
}


def register(family: ModelFamily, *, replace: bool = False) -> ModelFamily:
    """Make ``family`` available by ``family.name``; registering a taken name needs ``replace``."""
    if not isinstance(family, ModelFamily):
        raise TypeError(f"register() takes a ModelFamily; got {type(family).__name__}")
    if not family.name or not isinstance(family.name, str):
        raise ValueError(f"a model family needs a non-empty name; got {family.name!r}")
    old = _REGISTRY.get(family.name)
    if old is not None and old != family and not replace:
        raise ValueError(
            f"model family {family.name!r} is already registered; pass replace=True to "
            "replace it, or choose another name"
        )
    _REGISTRY[family.name] = family
    return family


def _entry_points() -> dict[str, str]:
    """``{name: module}`` of the installed packages' ``scorelab.families`` entry points."""
    from importlib.metadata import entry_points

    try:
        return {ep.name: ep.value.split(":")[0] for ep in entry_points(group=GROUP)}
    except Exception:  # broken metadata of an unrelated package must not stop training
        return {}


def names() -> list[str]:
    """Every family name that ``get`` can return: registered, built in, or an entry point."""
    return list(dict.fromkeys([*BUILTIN, *_REGISTRY, *_entry_points()]))


def get(name: str) -> ModelFamily:
    """The family registered as ``name``, importing the module that registers it if needed."""
    if name not in _REGISTRY:
        module = BUILTIN.get(name) or _entry_points().get(name)
        if module is not None:
            importlib.import_module(module)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(names())}")
    return _REGISTRY[name]
