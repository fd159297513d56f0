"""Class-conditional training with label dropout: one network learns p(x | k) and p(x)."""

from __future__ import annotations

import math

import pytest
import torch

from scorelab.data import Dataset, Normalization
from scorelab.densities import GaussianMixture
from scorelab.training import TrainConfig, Trainer

GM = GaussianMixture([0.3, 0.7], [[-1.5, -0.5], [1.0, 0.8]], [0.2, 0.3])


def _labelled(n=20_000, seed=0) -> Dataset:
    """Mixture draws labelled by their component: labels from the exact posterior at sigma 0
    (the components barely overlap, so this is the generating component up to ~1e-6)."""
    x = GM.sample(n, generator=torch.Generator().manual_seed(seed))
    labels = GM.smoothed_class_log_prob(x, None).argmax(-1)
    return Dataset(x, labels, Normalization.identity(), "labelled-mixture")


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(steps=40, batch_size=64, log_every=10, checkpoint_every=1000, out=str(tmp_path),
                conditional=True, net_kwargs={"hidden": 64, "depth": 2, "emb_dim": 32})  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_label_dropout_replaces_the_requested_share_with_the_no_label_token(tmp_path):
    trainer = Trainer(_cfg(tmp_path, label_dropout=0.25), data=_labelled(1000))
    labels = torch.zeros(40_000, dtype=torch.long)
    dropped = (trainer.drop_labels(labels) == 2).double().mean().item()  # token = num_classes
    assert abs(dropped - 0.25) < 5 * math.sqrt(0.25 * 0.75 / 40_000)
    assert trainer.model.num_classes == 2


def test_one_network_learns_the_conditional_and_unconditional_denoisers(tmp_path):
    """At sigma where the label matters (0.5..2), the conditional output must explain the
    label's effect, E||D*(y, s, k) - D*(y, s)||^2, up to 15% (measured when written: 2-9%),
    and the "no label" output the unconditional denoising signal up to 10% (measured <= 3%)."""
    cfg = _cfg(tmp_path, steps=1200, batch_size=256, label_dropout=0.2,
               net_kwargs={"hidden": 128, "depth": 3, "emb_dim": 64})  # fmt: skip
    trainer = Trainer(cfg, data=_labelled())
    trainer.run(cfg.steps, progress=False)
    model = trainer.ema_model()
    gen = torch.Generator().manual_seed(1)
    for sigma in (0.5, 1.0, 2.0):
        x = GM.sample(4000, generator=gen)
        k = GM.smoothed_class_log_prob(x, None).argmax(-1)
        y = x + sigma * torch.randn(x.shape, generator=gen)
        exact_c, exact_u = GM.denoise(y, sigma, k), GM.denoise(y, sigma)
        with torch.no_grad():
            err_c = ((model(y, sigma, k) - exact_c) ** 2).sum(-1).mean()
            err_u = ((model(y, sigma) - exact_u) ** 2).sum(-1).mean()
        effect = ((exact_c - exact_u) ** 2).sum(-1).mean()
        signal = ((exact_u - y) ** 2).sum(-1).mean()
        assert err_c < 0.15 * effect, (sigma, (err_c / effect).item())
        assert err_u < 0.10 * signal, (sigma, (err_u / signal).item())


def test_conditional_training_needs_labels(tmp_path):
    x = GM.sample(100, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="needs labelled data"):
        Trainer(_cfg(tmp_path), data=Dataset(x, None, Normalization.identity(), "unlabelled"))
    with pytest.raises(ValueError, match="label_dropout"):
        _cfg(tmp_path, label_dropout=1.0)
