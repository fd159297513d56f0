"""A minimal training loop (the trainer's AdamW step) and paired statistics for the tests."""

from __future__ import annotations

import torch
from torch import nn

# z-score of the statistical checks: exceeded by chance with probability ~6e-7 per check
Z = 5.0


def fit(model: nn.Module, loss_fn, x: torch.Tensor, steps: int, lr: float,
        batch_size: int = 256, seed: int = 0) -> list[float]:  # fmt: skip
    """``steps`` AdamW steps (warm-up 100, clipping at 1) on minibatches of ``x``: the same
    update as ``scorelab.training.Trainer.train_step``, without the run-folder bookkeeping."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 100)
        idx = torch.randint(len(x), (batch_size,), generator=g)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, x[idx], g)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


def paired_mean_se(d: torch.Tensor) -> tuple[float, float]:
    """Mean of per-example differences and its standard error ``sd / sqrt(n)``."""
    d = d.double()
    return d.mean().item(), (d.std() / d.numel() ** 0.5).item()
