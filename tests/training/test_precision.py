"""Mixed precision (``precision`` bf16/fp16 through torch.autocast, fp16 loss scaling) and
``compile`` in the trainer: same results as fp32 eager within stated tolerances."""

from __future__ import annotations

import pytest
import torch

from scorelab.data import Dataset, Normalization
from scorelab.densities import GaussianMixture
from scorelab.training import TrainConfig, Trainer, autocast_dtype
from scorelab.training.checkpoint import load_checkpoint

GM = GaussianMixture([0.3, 0.7], [[-1.5, -0.5], [1.0, 0.8]], [0.2, 0.3])
DATA = Dataset(
    GM.sample(2000, generator=torch.Generator().manual_seed(0)),
    None,
    Normalization.identity(),
    "mixture",
)


def _trainer(tmp_path, **kw) -> Trainer:
    base = dict(steps=30, batch_size=64, log_every=10, checkpoint_every=10, warmup_steps=10,
                device="cpu", out=str(tmp_path), net_kwargs={"hidden": 64, "depth": 2,
                "emb_dim": 32})  # fmt: skip
    return Trainer(TrainConfig(**{**base, **kw}), data=DATA)


def test_bf16_losses_stay_within_one_percent_of_fp32(tmp_path):
    """Autocast rounds the inputs of the network's matrix multiplies to bf16 (8 significant
    bits, unit roundoff 2^-8 = 0.4%) and accumulates in float32; the loss averages many such
    terms, so its per-step gap to fp32 is far smaller (measured when written: at most 4e-4
    relative over 60 steps of this setup); 1% leaves a 25-fold margin over that."""
    fp32 = _trainer(tmp_path / "fp32").run(30, progress=False)
    bf16_trainer = _trainer(tmp_path / "bf16", precision="bf16")
    bf16 = bf16_trainer.run(30, progress=False)
    assert bf16_trainer.amp_dtype is torch.bfloat16 and bf16_trainer.scaler is None
    assert bf16 != fp32  # autocast did change the arithmetic
    torch.testing.assert_close(torch.tensor(bf16), torch.tensor(fp32), rtol=1e-2, atol=0)


def test_fp16_scales_the_loss_unscales_before_clipping_and_resumes_exactly(tmp_path):
    _, norm32 = _trainer(tmp_path / "fp32").train_step()
    _, norm16 = _trainer(tmp_path / "fp16", precision="fp16").train_step()
    # clipping saw the unscaled gradient (the scaled one is 2^16 times larger)
    assert norm16 == pytest.approx(norm32, rel=1e-2)

    straight = _trainer(tmp_path / "a", precision="fp16")
    losses = straight.run(20, progress=False)
    first = _trainer(tmp_path / "b", precision="fp16")
    resumed = first.run(10, progress=False)
    _, meta, _ = load_checkpoint(tmp_path / "b")
    assert meta["grad_scaler"]["scale"] == 2.0**16 and meta["grad_scaler"]["_growth_tracker"] == 10
    again = _trainer(tmp_path / "b", precision="fp16")
    again.restore()
    resumed += again.run(20, progress=False)
    assert resumed == losses  # bit-identical on CPU
    assert again.scaler.state_dict() == straight.scaler.state_dict()  # tracker 20, not 10


def test_compile_gives_the_eager_losses_and_plain_checkpoint_keys(tmp_path):
    """torch.compile (inductor) may fuse and reorder float32 operations, so losses agree to
    float32 rounding (rtol 1e-5), not bit for bit (they were identical when written)."""
    eager = _trainer(tmp_path / "eager", steps=4, checkpoint_every=4).run(4, progress=False)
    compiled = _trainer(tmp_path / "compiled", steps=4, checkpoint_every=4, compile=True)
    losses = compiled.run(4, progress=False)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(eager), rtol=1e-5, atol=0)
    tensors, _, _ = load_checkpoint(tmp_path / "compiled")
    assert set(tensors["model"]) == set(compiled.model.state_dict())
    assert not any("_orig_mod" in k or k.startswith("module.") for k in tensors["model"])


def test_a_precision_torch_cannot_do_is_a_clear_error(monkeypatch):
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda *a: False)
    with pytest.raises(ValueError, match=r"precision 'fp16': torch .* cannot autocast to"):
        autocast_dtype("fp16", cpu)
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.raises(ValueError, match=r"precision 'bf16': torch .* has no autocast on cpu"):
        autocast_dtype("bf16", cpu)
