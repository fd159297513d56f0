"""Score networks (MLP, U-Net), their embeddings, and wrappers that turn a network into a denoiser.

>>> from scorelab.nets import build, from_config
>>> model = build("mlp", "edm", dim=2)          # EDMDenoiser(MLP(dim=2))
>>> model(x, sigma)                             # D(x, sigma): the denoised estimate
>>> model.score(x, sigma)                       # (D - x) / sigma^2 (Tweedie)
>>> same = from_config(model.config())          # rebuild from a JSON-serializable dict
"""

from __future__ import annotations

from scorelab.nets._common import num_parameters
from scorelab.nets.classifier import NoisyClassifier, train_noisy_classifier
from scorelab.nets.denoisers import (
    NETS,
    PARAMETERIZATIONS,
    Denoiser,
    EDMDenoiser,
    EnergyDenoiser,
    EpsDenoiser,
    Preconditioning,
    ScoreDenoiser,
    VelocityDenoiser,
    build,
    from_config,
)
from scorelab.nets.embeddings import (
    ClassEmbedding,
    ConditionEmbedding,
    FourierEmbedding,
    PositionalEmbedding,
)
from scorelab.nets.mlp import MLP
from scorelab.nets.unet import UNet

__all__ = [
    "MLP",
    "NETS",
    "PARAMETERIZATIONS",
    "ClassEmbedding",
    "ConditionEmbedding",
    "Denoiser",
    "EDMDenoiser",
    "EnergyDenoiser",
    "EpsDenoiser",
    "FourierEmbedding",
    "NoisyClassifier",
    "PositionalEmbedding",
    "Preconditioning",
    "ScoreDenoiser",
    "UNet",
    "VelocityDenoiser",
    "build",
    "from_config",
    "num_parameters",
    "train_noisy_classifier",
]
