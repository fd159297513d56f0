"""Exponential moving average of model weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class EMA:
    """``theta_ema <- decay * theta_ema + (1 - decay) * theta`` after every step, with the
    warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` so early averages are not stuck at
    the initialization (as in TensorFlow's ExponentialMovingAverage with num_updates)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay_at(self, step: int) -> float:
        """The decay of the update after step ``step``."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = self.decay_at(step)
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v, 1 - d)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise ValueError(f"EMA state lacks {sorted(missing)[:3]}...: the checkpoint is damaged")
        for k in self.shadow:
            self.shadow[k].copy_(state[k])


def power_ema_beta(step: int, gamma: float) -> float:
    """The power-function EMA's decay at ``step`` (1-based): ``(1 - 1/t)^(gamma + 1)``, whose
    average weighs step ``tau <= t`` by ``(tau^(g+1) - (tau-1)^(g+1)) / t^(g+1)``, about
    ``tau^gamma`` (Karras et al. 2024, EDM2, eqs. 2-3), so its length is a fixed fraction of the
    run (``power_ema_sigma_rel``)."""
    if step < 1:
        raise ValueError(f"step must be >= 1 (the first update is step 1); got {step}")
    return (1.0 - 1.0 / step) ** (gamma + 1.0)


def power_ema_sigma_rel(gamma: float) -> float:
    """EDM2's relative EMA length of a power-function EMA, ``sqrt((g+1) / ((g+2)^2 (g+3)))``
    (Karras et al. 2024, eq. 4): its width as a fraction of the training length."""
    return math.sqrt((gamma + 1.0) / ((gamma + 2.0) ** 2 * (gamma + 3.0)))


class PowerEMA(EMA):
    """A power-function EMA (EDM2): ``decay_t = power_ema_beta(t, gamma)`` in place of the
    warm-up-capped constant decay. The trainer's ``EMA`` warm-up ``(1 + t) / (10 + t)`` is about
    ``gamma = 8`` (``1 - decay_t ~ 9 / t``) while it stays below ``decay``."""

    def __init__(self, model: nn.Module, gamma: float):
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0 (EDM2 uses about 5-20); got {gamma}")
        super().__init__(model, decay=1.0)
        self.gamma = gamma

    def decay_at(self, step: int) -> float:
        return power_ema_beta(step, self.gamma)
