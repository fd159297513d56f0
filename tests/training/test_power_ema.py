"""The power-function EMA (EDM2, Karras et al. 2024) against its closed form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scorelab.training.ema import EMA, PowerEMA, power_ema_beta, power_ema_sigma_rel


def _weights(t: int, gamma: float) -> list[float]:
    """The weight of step tau's parameters in the average after step t, from the decays:
    ``(1 - beta_tau) * prod_{s > tau} beta_s`` (step 1 has beta 0: the average starts there)."""
    out = []
    for tau in range(1, t + 1):
        w = 1 - power_ema_beta(tau, gamma)
        for s in range(tau + 1, t + 1):
            w *= power_ema_beta(s, gamma)
        out.append(w)
    return out


@pytest.mark.parametrize("gamma", [2.5, 6.94, 16.0])
def test_power_ema_equals_the_weighted_sum_of_past_weights(gamma):
    net = nn.Linear(1, 1, bias=False)
    ema = PowerEMA(net, gamma)
    t = 40
    for step in range(1, t + 1):
        with torch.no_grad():
            net.weight.fill_(float(step))  # theta_tau = tau
        ema.update(net, step)
    w = _weights(t, gamma)
    assert sum(w) == pytest.approx(1.0, abs=1e-12)
    exact = sum(tau * wt for tau, wt in zip(range(1, t + 1), w, strict=True))
    # float32 shadow: 40 lerps of values <= 40 carry ~1e-5 relative rounding
    assert ema.shadow["weight"].item() == pytest.approx(exact, rel=1e-5)
    # the product telescopes: w_tau = (tau^(g+1) - (tau-1)^(g+1)) / t^(g+1), about
    # (g+1) tau^g / t^(g+1), EDM2's weighting proportional to tau^gamma (eq. 2)
    ref = [(tau ** (gamma + 1) - (tau - 1) ** (gamma + 1)) / t ** (gamma + 1)
           for tau in range(1, t + 1)]  # fmt: skip
    assert w == pytest.approx(ref, rel=1e-9)


def test_sigma_rel_matches_edm2():
    # EDM2 (Karras et al. 2024) quotes gamma 16.97 <-> sigma_rel 0.05 and 6.94 <-> 0.10
    assert power_ema_sigma_rel(16.97) == pytest.approx(0.05, abs=5e-4)
    assert power_ema_sigma_rel(6.94) == pytest.approx(0.10, abs=5e-4)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="gamma"):
        PowerEMA(nn.Linear(1, 1), 0.0)
    with pytest.raises(ValueError, match="step"):
        power_ema_beta(0, 5.0)


def test_trainer_ema_keeps_its_warm_up():
    ema = EMA(nn.Linear(1, 1), 0.999)
    assert ema.decay_at(1) == pytest.approx(2 / 11)
    assert ema.decay_at(20_000) == 0.999
    assert math.isclose(ema.decay_at(1000), 1001 / 1010)
