"""The quickstart's digits recipe: one definition, used by the command and the benchmark."""

from __future__ import annotations

import pytest

from scorelab.cli import quickstart
from scorelab.training import TrainConfig


def test_digits_config_is_the_recipe_with_its_length(tmp_path):
    cfg = quickstart.digits_config(3, str(tmp_path))
    assert isinstance(cfg, TrainConfig)
    for key, value in quickstart.DIGITS_RECIPE.items():
        assert getattr(cfg, key) == value, key
    assert (cfg.steps, cfg.seed, cfg.out) == (quickstart.DIGITS_STEPS, 3, str(tmp_path))
    assert quickstart.digits_config(0, "x", quick=True).steps == 30
    assert quickstart.digits_config(0, "x", steps=123).steps == 123


def test_digits_configs_do_not_share_mutable_settings():
    a = quickstart.digits_config(0, "a")
    a.net_kwargs["base_channels"] = 999
    assert quickstart.DIGITS_RECIPE["net_kwargs"]["base_channels"] != 999
    assert quickstart.digits_config(0, "b").net_kwargs["base_channels"] != 999


@pytest.fixture
def sample_calls(monkeypatch) -> dict:
    """The keyword arguments of the latest ``diffusion.sample`` call (which still runs)."""
    from scorelab import diffusion

    seen = {}
    real = diffusion.sample

    def spy(model, n, **kwargs):
        seen.update(kwargs)
        return real(model, n, **kwargs)

    monkeypatch.setattr(diffusion, "sample", spy)
    return seen


def test_quickstart_samples_from_the_training_datas_moments(tmp_path, sample_calls):
    """A bare network has no data moments: the quickstart passes the training data's, so
    ``diffusion.sample`` starts from the data-aware prior and places its default levels by the
    data's scale, as ``scorelab sample`` does for the same run folder."""
    import torch

    seen = sample_calls
    cfg = TrainConfig(data="moons", n=300, steps=3, batch_size=16, seed=0, out=str(tmp_path / "m"),
                      device="cpu")  # fmt: skip
    lines, out = quickstart.train_sample_evaluate("moons", cfg, 50, {"sampler": "heun", "nfe": 5})
    assert (seen["sampler"], seen["nfe"]) == ("heun", 5) and "heun 5 NFE" in lines[0]
    mean, cov = seen["prior_moments"]
    x = out["result"].data.x.double()
    torch.testing.assert_close(mean, x.mean(0))  # exact: the same float64 reduction
    torch.testing.assert_close(cov, torch.cov(x.T))
    assert (tmp_path / "m" / "data_moments.npz").exists()  # kept for `scorelab sample`


def test_digits_sampling_is_a_valid_sampler_and_budget():
    from scorelab.cli.names import SAMPLERS

    assert quickstart.DIGITS_SAMPLING["sampler"] in SAMPLERS
    assert quickstart.DIGITS_SAMPLING["nfe"] >= 1


def test_a_conditional_recipe_samples_classes_drawn_from_the_data(tmp_path, sample_calls):
    """The digits recipe is class-conditional: the quickstart draws each sample's class from
    the training data's class frequencies (seeded by the run's seed) and samples x | class, a
    draw of p(x); the report says so."""
    import torch

    assert quickstart.DIGITS_RECIPE["conditional"]
    seen = sample_calls
    cfg = quickstart.digits_config(2, str(tmp_path / "d"), steps=2, device="cpu")
    cfg.net_kwargs["base_channels"] = 8
    lines, out = quickstart.train_sample_evaluate("digits", cfg, 20, {"sampler": "euler",
                                                                      "nfe": 2})  # fmt: skip
    want = out["result"].data.draw_labels(20, torch.Generator().manual_seed(2))
    assert seen["cond"].tolist() == want.tolist()
    assert "classes drawn from the training data" in lines[0]
