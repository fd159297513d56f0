"""Untrusted files are refused with clear errors; same config and seed give identical results."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
import torch

from scorelab import diffusion
from scorelab.nets import from_config
from scorelab.training import TrainConfig, load_model, train
from scorelab.training.checkpoint import load_checkpoint


def _train(out, seed=0):
    small = {"hidden": 16, "depth": 2, "emb_dim": 8}
    cfg = TrainConfig(data="ring", n=400, steps=6, batch_size=16, checkpoint_every=3, seed=seed,
                      out=str(out), net_kwargs=small)  # fmt: skip
    return train(cfg, progress=False)


class _Boom:
    def __reduce__(self):
        return (print, ("pickle payload executed",))


def test_a_pickled_or_malformed_checkpoint_is_refused_never_executed(tmp_path, capsys):
    _train(tmp_path)
    for folder in (tmp_path / "checkpoints").glob("step-*"):
        # a pickle where weights should be, with a manifest forged to match it
        (folder / "model.safetensors").write_bytes(pickle.dumps(_Boom()))
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["model.safetensors"] = hashlib.sha256(
            (folder / "model.safetensors").read_bytes()
        ).hexdigest()
        (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"no intact checkpoint .*unreadable"):
        load_checkpoint(tmp_path)
    assert "pickle payload executed" not in capsys.readouterr().out


def test_a_malformed_run_config_is_refused(tmp_path):
    _train(tmp_path)
    (tmp_path / "config.json").write_text('{"train": {"steps": 5, "evil": 1}}')
    with pytest.raises(ValueError, match=r"not a scorelab run config .*unknown config key"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a scorelab run config"):
        load_model(tmp_path)


def test_model_configs_only_build_registered_classes():
    with pytest.raises(ValueError, match=r"unknown net 'os\.system'"):
        from_config({"parameterization": "edm", "net": "os.system", "net_kwargs": {}})
    with pytest.raises(ValueError, match="unknown parameterization"):
        from_config({"parameterization": "__import__", "net": "mlp", "net_kwargs": {"dim": 2}})


def test_same_config_and_seed_give_bit_identical_weights_and_samples(tmp_path):
    a, b = _train(tmp_path / "a"), _train(tmp_path / "b")
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                           strict=True):  # fmt: skip
        assert torch.equal(va, vb), k
    sa = diffusion.sample(a.model, 64, sampler="heun", nfe=9,
                          generator=torch.Generator().manual_seed(5)).samples  # fmt: skip
    sb = diffusion.sample(b.model, 64, sampler="heun", nfe=9,
                          generator=torch.Generator().manual_seed(5)).samples  # fmt: skip
    assert torch.equal(sa, sb)
    c = _train(tmp_path / "c", seed=1)
    assert not torch.equal(next(iter(c.model.state_dict().values())),
                           next(iter(a.model.state_dict().values())))  # fmt: skip
    record = json.loads((tmp_path / "a" / "config.json").read_text())
    assert record["train"]["seed"] == 0 and {"scorelab", "torch", "python"} <= set(
        record["versions"]
    )
