"""One call for the standard table: every sample-set metric that applies to the data at hand."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
from torch import Tensor

from scorelab.metrics.distances import energy_distance, memorization_ratio, mmd, sliced_wasserstein
from scorelab.metrics.divergences import js_divergence, kl_divergence
from scorelab.metrics.features import (
    FeatureClassifier,
    class_accuracy,
    classifier_confidence,
    frechet_distance,
    precision_recall,
)

# Kernel metrics are O(n^2): both sets are cut to this many rows (an evenly strided subset).
PAIRWISE_MAX = 2000
# k-NN divergence estimates are reported only in low dimension, where they are reliable.
KNN_MAX_DIM = 8

# name -> (what it measures, which direction is better)
DESCRIPTIONS: dict[str, str] = {
    "sliced_wasserstein": "sliced Wasserstein-2 to the reference (lower is better)",
    "mmd": "unbiased MMD^2, RBF kernels at 3 bandwidths (lower; ~0 for equal laws)",
    "energy_distance": "energy distance (lower; 0 for equal laws)",
    "kl_knn": "KL(samples || reference), 1-NN estimate (lower)",
    "js_knn": "Jensen-Shannon, 1-NN estimate (lower; at most ln 2)",
    "memorization_ratio": "median NN distance to train: samples / held-out (~1 ok, << 1 copies)",
    "frechet_distance": "Frechet distance of classifier features (lower)",
    "precision": "share of samples on the data manifold (higher)",
    "recall": "share of data on the samples' manifold (higher)",
    "confidence": "mean top class probability of samples (higher: recognizable)",
    "class_accuracy": "share classified as the requested class (higher)",
}


# The fewest rows (of the smaller of the two sets) at which a metric's small-sample bias is
# tolerable. The Frechet distance of d-dim features is biased upward by about
# (tr S1 / n1 + tr S2 / n2) (its covariance estimates), i.e. like d / n, and its covariances
# are singular below n = d: it needs FRECHET_ROWS_PER_DIM * d rows. k-NN estimates (precision
# and recall with k = 3 neighbours; KL/JS with k = 1) come from neighbour radii that are
# inflated when few points cover the manifold.
FRECHET_ROWS_PER_DIM = 10
MIN_SAMPLES: dict[str, int] = {"precision": 100, "recall": 100, "kl_knn": 100, "js_knn": 100}


def minimum_samples(name: str, feature_dim: int | None = None) -> int | None:
    """The fewest samples for metric ``name`` (see ``MIN_SAMPLES``); ``None`` if any number
    will do (MMD^2 is unbiased; sliced W2 and energy distance are compared with a floor at the
    same size)."""
    if name == "frechet_distance":
        return None if feature_dim is None else FRECHET_ROWS_PER_DIM * feature_dim
    return MIN_SAMPLES.get(name)


def sample_size_warnings(names: Iterable[str], n: int, feature_dim: int | None = None) -> list[str]:
    """One sentence per metric in ``names`` for which ``n`` rows are too few (``minimum_samples``),
    naming the minimum."""
    out = []
    for name in names:
        least = minimum_samples(name, feature_dim)
        if least is None or n >= least:
            continue
        if name == "frechet_distance":
            why = (f"its upward bias grows like d/n for d = {feature_dim} feature dimensions; "
                   f"use at least {least} ({FRECHET_ROWS_PER_DIM} x d)")  # fmt: skip
        else:
            why = f"its nearest-neighbour radii are inflated; use at least {least}"
        out.append(f"{name} from {n} samples is unreliable: {why}")
    return out


def _strided(x: Tensor, m: int) -> Tensor:
    if x.shape[0] <= m:
        return x
    return x[torch.linspace(0, x.shape[0] - 1, m, device=x.device).long()]


def evaluate(
    samples: Tensor,
    reference: Tensor,
    *,
    train: Tensor | None = None,
    classifier: FeatureClassifier | None = None,
    requested_labels: Tensor | None = None,
    generator: torch.Generator | None = None,
    warn: bool = True,
) -> dict[str, float]:
    """Compare ``samples`` with held-out ``reference`` data (both in the same units, e.g. model
    units) by every metric that applies, as a ``{name: value}`` dict (see ``DESCRIPTIONS``).

    Always: sliced Wasserstein, MMD^2 and energy distance (the last two on at most
    ``PAIRWISE_MAX`` rows each). In dimension <= ``KNN_MAX_DIM``: k-NN KL and JS estimates.
    With ``train``: the memorization ratio (samples vs held-out distances to ``train``). With a
    ``classifier`` (images or vectors it was trained on): Frechet distance of its features,
    precision/recall and confidence; with ``requested_labels`` too, class accuracy.
    Pass the data itself as ``samples`` to get the data-vs-data floor of each number, at the
    same sizes (``data_floor`` does that). With ``warn``, a ``UserWarning`` names each metric for
    which the number of samples is below its minimum (``sample_size_warnings``). The reference and
    classifier follow the samples' device.
    """
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"samples are shaped {tuple(samples.shape[1:])} per example but the reference data "
            f"{tuple(reference.shape[1:])}: compare samples of the model trained on this data"
        )
    if not torch.isfinite(samples).all():
        bad = int((~torch.isfinite(samples.reshape(samples.shape[0], -1))).any(1).sum())
        raise ValueError(
            f"{bad} of {samples.shape[0]} samples hold NaN or inf: the sampler diverged; sample "
            "again with more steps or a smaller step size"
        )
    reference = reference.to(samples)
    out: dict[str, float] = {
        "sliced_wasserstein": sliced_wasserstein(samples, reference, generator=generator).item()
    }
    a, b = _strided(samples, PAIRWISE_MAX), _strided(reference, PAIRWISE_MAX)
    out["mmd"] = mmd(a, b).item()
    out["energy_distance"] = energy_distance(a, b).item()
    if samples[0].numel() <= KNN_MAX_DIM:
        out["kl_knn"] = kl_divergence(a, b, k=1).item()
        out["js_knn"] = js_divergence(a, b, k=1).item()
    if train is not None:
        out["memorization_ratio"] = memorization_ratio(samples, train.to(samples), reference).item()
    feature_dim = None
    if classifier is not None:
        classifier = classifier.to(samples.device)
        fs, fr = classifier.features(samples), classifier.features(reference)
        feature_dim = fs.shape[1]
        out["frechet_distance"] = frechet_distance(fs, fr).item()
        pr = precision_recall(_strided(fr, PAIRWISE_MAX), _strided(fs, PAIRWISE_MAX))
        out["precision"], out["recall"] = pr.precision.item(), pr.recall.item()
        probs = classifier.predict_proba(samples)
        out["confidence"] = classifier_confidence(probs).item()
        if requested_labels is not None:
            out["class_accuracy"] = class_accuracy(probs, requested_labels).item()
    if warn:  # the reference's share of the bias is the same for the floor (data_floor)
        for message in sample_size_warnings(out, samples.shape[0], feature_dim):
            warnings.warn(message, UserWarning, stacklevel=2)
    return out


def data_floor(
    data: Tensor,
    reference: Tensor,
    n: int,
    *,
    classifier: FeatureClassifier | None = None,
    generator: torch.Generator | None = None,
    warn: bool = True,
) -> dict[str, float]:
    """The data-vs-data floor of ``evaluate`` for ``n`` samples: a random ``n`` rows of ``data``
    (fresh data, e.g. the training set) in place of the samples, against the same ``reference``,
    so every size-dependent bias is that of the samples' numbers. Raises if ``data`` has fewer
    than ``n`` rows (the floor would be at another size)."""
    if data.shape[0] < n:
        raise ValueError(
            f"the floor for {n} samples needs at least {n} rows of data; got {data.shape[0]}: "
            "evaluate fewer samples, or pass more data"
        )
    gen_device = "cpu" if generator is None else generator.device
    idx = torch.randperm(data.shape[0], generator=generator, device=gen_device)[:n]
    return evaluate(data[idx.to(data.device)], reference, classifier=classifier,
                    generator=generator, warn=warn)  # fmt: skip
