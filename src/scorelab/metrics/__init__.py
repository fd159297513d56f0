"""Sample-quality metrics: distances and divergences between sample sets, feature-space metrics
from a small library-trained classifier, and memorization checks.

>>> from scorelab.metrics import mmd, energy_distance, kl_divergence, frechet_distance
>>> mmd(x, y)                                       # unbiased MMD^2, RBF kernels
>>> kl_divergence(x, y, k=1)                        # k-NN estimate from samples
>>> kl_divergence(p, q, n=10_000, generator=g)      # Monte Carlo, known densities
>>> clf = train_classifier(train.x, train.labels, generator=g)
>>> frechet_distance(clf.features(real), clf.features(fake))
"""

from scorelab.metrics.distances import (
    energy_distance,
    memorization_ratio,
    mmd,
    nearest_neighbor_distances,
    psnr,
    sliced_wasserstein,
)
from scorelab.metrics.divergences import js_divergence, kl_divergence
from scorelab.metrics.evaluate import (
    DESCRIPTIONS,
    MIN_SAMPLES,
    data_floor,
    evaluate,
    minimum_samples,
    sample_size_warnings,
)
from scorelab.metrics.features import (
    FeatureClassifier,
    PrecisionRecall,
    class_accuracy,
    classifier_confidence,
    frechet_distance,
    precision_recall,
    train_classifier,
)

__all__ = [
    "DESCRIPTIONS",
    "MIN_SAMPLES",
    "FeatureClassifier",
    "PrecisionRecall",
    "class_accuracy",
    "classifier_confidence",
    "data_floor",
    "energy_distance",
    "evaluate",
    "frechet_distance",
    "js_divergence",
    "kl_divergence",
    "memorization_ratio",
    "minimum_samples",
    "mmd",
    "nearest_neighbor_distances",
    "precision_recall",
    "psnr",
    "sample_size_warnings",
    "sliced_wasserstein",
    "train_classifier",
]
