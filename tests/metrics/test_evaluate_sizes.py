"""``evaluate`` warns when there are too few samples for a metric, and ``data_floor`` scores the
data at the samples' size (issue 18, item 7)."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

from scorelab.metrics import (
    MIN_SAMPLES,
    data_floor,
    evaluate,
    minimum_samples,
    sample_size_warnings,
    train_classifier,
)

evaluate_module = importlib.import_module("scorelab.metrics.evaluate")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_minimum_samples_per_metric():
    assert minimum_samples("frechet_distance", feature_dim=64) == 640  # 10 x d
    assert minimum_samples("frechet_distance") is None  # no features, no rule
    assert minimum_samples("kl_knn") == MIN_SAMPLES["kl_knn"] == 100
    assert minimum_samples("mmd") is None  # unbiased at any n
    (msg,) = sample_size_warnings(["mmd", "frechet_distance"], 64, feature_dim=64)
    assert msg == (
        "frechet_distance from 64 samples is unreliable: its upward bias grows like d/n for "
        "d = 64 feature dimensions; use at least 640 (10 x d)"
    )
    assert sample_size_warnings(["frechet_distance", "precision"], 640, feature_dim=64) == []


def test_evaluate_warns_below_the_minimum_and_not_above():
    ref = torch.randn(300, 2, generator=gen(0))
    with pytest.warns(UserWarning) as record:
        evaluate(torch.randn(50, 2, generator=gen(1)), ref, generator=gen(2))
    assert [str(w.message).split(":")[0] for w in record] == [
        "kl_knn from 50 samples is unreliable",
        "js_knn from 50 samples is unreliable",
    ]
    assert "use at least 100" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 200 samples: no metric is below its minimum
        evaluate(torch.randn(200, 2, generator=gen(1)), ref, generator=gen(2))
        evaluate(torch.randn(50, 2, generator=gen(1)), ref, generator=gen(2), warn=False)


def test_frechet_warning_names_the_feature_dimension():
    x = torch.randn(200, 16, generator=gen(0))
    labels = (x[:, 0] > 0).long()
    clf = train_classifier(x, labels, num_classes=2, steps=5, generator=gen(1))
    with pytest.warns(UserWarning, match=r"frechet_distance from 100 samples .* d = 64 .* 640"):
        evaluate(x[:100], x[100:], classifier=clf, generator=gen(2))


def test_data_floor_scores_n_rows_of_the_data_against_the_same_reference(monkeypatch):
    data, ref = torch.randn(1000, 2, generator=gen(0)), torch.randn(400, 2, generator=gen(1))
    seen = []
    real = evaluate_module.evaluate

    def spy(samples, reference, **kw):
        seen.append((samples, reference))
        return real(samples, reference, **kw)

    monkeypatch.setattr(evaluate_module, "evaluate", spy)
    floor = data_floor(data, ref, 64, generator=gen(2), warn=False)
    ((rows, reference),) = seen
    assert rows.shape == (64, 2) and reference is ref
    # the rows are distinct rows of the data (a subset, not a resample)
    matches = (rows[:, None] == data[None]).all(-1)
    assert (matches.sum(1) == 1).all() and len(set(matches.float().argmax(1).tolist())) == 64
    assert set(floor) == {"sliced_wasserstein", "mmd", "energy_distance", "kl_knn", "js_knn"}


def test_data_floor_refuses_another_size():
    with pytest.raises(ValueError, match="floor for 64 samples needs at least 64 rows"):
        data_floor(torch.randn(10, 2), torch.randn(20, 2), 64)
