"""Exponential moving average of model weights."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    """``theta_ema <- decay * theta_ema + (1 - decay) * theta`` after every step, with the
    warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` so early averages are not stuck at
    the initialization (as in TensorFlow's ExponentialMovingAverage with num_updates)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
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
