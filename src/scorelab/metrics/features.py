"""Feature-space metrics: a small classifier trained by the library supplies the features.

>>> clf = train_classifier(train.x, train.labels, generator=torch.Generator().manual_seed(0))
>>> fd = frechet_distance(clf.features(real), clf.features(fake))
>>> pr = precision_recall(clf.features(real), clf.features(fake), k=3)
>>> class_accuracy(clf.predict_proba(fake), requested_labels)
>>> clf.save("feature_net/"); FeatureClassifier.load("feature_net/")

The classifier sees inputs in the units it was trained on (``Dataset.x``, model units).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from scorelab.metrics._common import (
    check_k,
    flat_pair,
    flat_samples,
    kth_neighbor_distance,
    rows_per_block,
    sq_dists,
)

FORMAT = "scorelab.metrics.FeatureClassifier"
_CONFIG_KEYS = ("event_shape", "num_classes", "width", "feature_dim", "seed")


class FeatureClassifier(nn.Module):
    """A small classifier whose penultimate layer gives features for the metrics below.

    Images ``[N, C, H, W]``: three 3x3 convolutions (``width``, ``2 width``, ``2 width``
    channels; the last two with stride 2), global average pooling, then a ``feature_dim``
    layer. Vectors ``[N, D]``: two hidden layers (``4 width``, ``feature_dim``). SiLU throughout;
    a linear head gives the class logits.
    """

    def __init__(
        self,
        event_shape: tuple[int, ...] | list[int],
        num_classes: int,
        width: int = 16,
        feature_dim: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        shape = tuple(event_shape)
        if len(shape) not in (1, 3) or not all(isinstance(s, int) and s >= 1 for s in shape):
            raise ValueError(
                f"event_shape must be (C, H, W) for images or (D,) for vectors; got {event_shape!r}"
            )
        check_k(width, "width")
        check_k(feature_dim, "feature_dim")
        if check_k(num_classes, "num_classes") < 2:
            raise ValueError(f"num_classes must be >= 2 for a classifier; got {num_classes}")
        self.event_shape = shape
        self._config = {
            "event_shape": list(shape),
            "num_classes": num_classes,
            "width": width,
            "feature_dim": feature_dim,
            "seed": seed,
        }
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if len(shape) == 3:
                c, w = shape[0], width
                self.body = nn.Sequential(
                    nn.Conv2d(c, w, 3, padding=1), nn.SiLU(),
                    nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.SiLU(),
                    nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.SiLU(),
                    nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                    nn.Linear(2 * w, feature_dim), nn.SiLU(),
                )  # fmt: skip
            else:
                self.body = nn.Sequential(
                    nn.Linear(shape[0], 4 * width), nn.SiLU(),
                    nn.Linear(4 * width, feature_dim), nn.SiLU(),
                )  # fmt: skip
            self.head = nn.Linear(feature_dim, num_classes)

    def config(self) -> dict:
        """Constructor arguments (JSON-serializable): ``FeatureClassifier(**config())``."""
        return dict(self._config)

    def _check(self, x: object) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(f"x must be a floating torch.Tensor [N, *{self.event_shape}]")
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"x has shape {tuple(x.shape)} but the classifier was trained on examples of "
                f"shape {self.event_shape}; pass [N, *{self.event_shape}] in the training units"
            )
        if not torch.isfinite(x).all():
            raise ValueError("x has non-finite values; pass finite numbers")
        p = self.head.weight
        return x.to(device=p.device, dtype=p.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``[N, num_classes]``."""
        return self.head(self.body(x))

    @torch.no_grad()
    def _batched(self, x: Tensor, batch_size: int, probs: bool) -> Tensor:
        check_k(batch_size, "batch_size")
        was_training = self.training
        self.eval()
        try:
            out = torch.cat([self.body(b) for b in self._check(x).split(batch_size)])
            if probs:
                out = self.head(out).softmax(-1)
        finally:
            self.train(was_training)
        return out.to(x.device)

    def features(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Penultimate-layer activations ``[N, feature_dim]``, on ``x``'s device."""
        return self._batched(x, batch_size, probs=False)

    def predict_proba(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Class probabilities ``[N, num_classes]`` (softmax of the logits), on ``x``'s device."""
        return self._batched(x, batch_size, probs=True)

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` into ``folder``; nothing pickled."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, folder / "weights.safetensors")
        meta = {"format": FORMAT, "version": 1, **self.config()}
        (folder / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu") -> FeatureClassifier:
        """Rebuild a classifier written by ``save`` (in eval mode, on ``device``)."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as err:
            raise ValueError(
                f"{folder} holds no readable config.json; pass a folder written by "
                f"FeatureClassifier.save ({err})"
            ) from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{folder}/config.json is not a {FORMAT} config")
        try:
            model = cls(**{k: meta[k] for k in _CONFIG_KEYS if k in meta})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{folder}/config.json has bad values: {err}") from err
        try:
            model.load_state_dict(load_file(folder / "weights.safetensors"))
        except (OSError, RuntimeError, SafetensorError) as err:
            raise ValueError(
                f"{folder}/weights.safetensors does not match config.json; save the "
                f"classifier again ({err})"
            ) from err
        return model.to(device).eval()


def train_classifier(
    x: Tensor,
    labels: Tensor,
    *,
    num_classes: int | None = None,
    steps: int = 500,
    batch_size: int = 128,
    lr: float = 3e-3,
    width: int = 16,
    feature_dim: int = 64,
    generator: torch.Generator | None = None,
) -> FeatureClassifier:
    """Train a ``FeatureClassifier`` on ``(x, labels)`` (e.g. a data set's training split) by
    cross-entropy with Adam (Kingma & Ba 2015), cosine-decayed learning rate, ``steps``
    minibatches drawn with ``generator``; runs on ``x``'s device and returns it in eval mode.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim not in (2, 4):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"x must be a floating tensor [N, C, H, W] (images) or [N, D] (vectors); got {shape}"
        )
    if not isinstance(labels, Tensor) or labels.shape != x.shape[:1] or labels.is_floating_point():
        raise ValueError(
            f"labels must be an integer tensor [{x.shape[0]}], one class index per example of x"
        )
    if not torch.isfinite(x).all():
        raise ValueError("x has non-finite values; pass finite numbers")
    labels = labels.long().to(x.device)
    if labels.min() < 0:
        raise ValueError("labels must be class indices >= 0")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if labels.max() >= num_classes:
        raise ValueError(f"labels go up to {int(labels.max())}; num_classes is {num_classes}")
    check_k(steps, "steps")
    check_k(batch_size, "batch_size")
    gen_device = generator.device if generator is not None else x.device
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=gen_device))
    model = FeatureClassifier(tuple(x.shape[1:]), num_classes, width, feature_dim, seed)
    model.to(device=x.device, dtype=x.dtype).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(x.shape[0], (batch_size,), generator=generator, device=gen_device)
        idx = idx.to(x.device)
        loss = nn.functional.cross_entropy(model(x[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


# -- metrics on features and class probabilities ---------------------------------------------
def _moments(a: object, name: str) -> tuple[Tensor, Tensor]:
    """``(mean [d], covariance [d, d])`` in float64, from features ``[n, d]`` or a pair."""
    if isinstance(a, (tuple, list)):
        if len(a) != 2:
            raise ValueError(f"{name} must be features [n, d] or a pair (mean, cov); got {a!r}")
        mu, cov = (torch.as_tensor(t, dtype=torch.float64) for t in a)
        d = mu.shape[-1] if mu.ndim == 1 else -1
        if mu.ndim != 1 or cov.shape != (d, d):
            raise ValueError(
                f"{name} = (mean, cov) must have shapes [d] and [d, d]; got "
                f"{tuple(mu.shape)} and {tuple(cov.shape)}"
            )
        if not (torch.isfinite(mu).all() and torch.isfinite(cov).all()):
            raise ValueError(f"{name} has non-finite values; pass finite numbers")
        return mu, (cov + cov.mT) / 2
    feats = flat_samples(a, name)
    if feats.device.type == "mps":  # no float64 there
        feats = feats.cpu()
    feats = feats.double()
    return feats.mean(0), torch.cov(feats.mT).reshape(feats.shape[1], feats.shape[1])


def _sqrt_psd(s: Tensor) -> Tensor:
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp_min(0).sqrt()) @ v.mT


def frechet_distance(
    x: Tensor | tuple[Tensor, Tensor], y: Tensor | tuple[Tensor, Tensor]
) -> Tensor:
    """Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, FID):
    ``|mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))``.

    Each argument is features ``[n, d]`` or a pair ``(mean [d], covariance [d, d])``. Float64;
    ``tr (S_1 S_2)^(1/2)`` is the sum of square roots of the eigenvalues of the symmetric
    ``S_1^(1/2) S_2 S_1^(1/2)`` (same spectrum, no complex round-off). Clamped at 0.
    """
    (mu1, s1), (mu2, s2) = _moments(x, "x"), _moments(y, "y")
    mu2, s2 = mu2.to(mu1.device), s2.to(mu1.device)
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"x and y must have the same feature size; got {mu1.shape[0]} and {mu2.shape[0]}: "
            "take both from the same feature network"
        )
    r = _sqrt_psd(s1)
    tr_sqrt = torch.linalg.eigvalsh(r @ s2 @ r).clamp_min(0).sqrt().sum()
    fd = (mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * tr_sqrt
    return fd.clamp_min(0)


class PrecisionRecall(NamedTuple):
    precision: Tensor
    recall: Tensor


def _coverage(query: Tensor, ref: Tensor, radii: Tensor) -> Tensor:
    """Fraction of ``query`` rows inside at least one ball ``B(ref_i, radii_i)``."""
    inside = []
    r2 = radii.square()
    for block in query.split(rows_per_block(ref.shape[0], None)):
        inside.append((sq_dists(block, ref) <= r2).any(1))
    return torch.cat(inside).to(query.dtype).mean()


def precision_recall(real_feats: Tensor, fake_feats: Tensor, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al. 2019): each set's manifold
    is the union of balls reaching every point's ``k``-th nearest neighbour in its own set;
    precision is the fraction of fake samples on the real manifold, recall that of real samples
    on the fake manifold. Both are 1 for identical sets.
    """
    k = check_k(k)
    real, fake = flat_pair(
        real_feats, fake_feats, ("real_feats", "fake_feats"), k + 1, f" for k = {k} (or lower k)"
    )
    center = real.mean(0)
    real, fake = real - center, fake - center
    r_real = kth_neighbor_distance(real, real, k, self_offset=0)
    r_fake = kth_neighbor_distance(fake, fake, k, self_offset=0)
    return PrecisionRecall(_coverage(fake, real, r_real), _coverage(real, fake, r_fake))


def _check_probs(probs: object) -> Tensor:
    if not isinstance(probs, Tensor) or probs.ndim != 2 or not probs.is_floating_point():
        raise ValueError("probs must be a floating tensor [n, num_classes] of class probabilities")
    sums = probs.sum(-1)
    ok = torch.isfinite(probs).all() and (probs >= 0).all()
    if not ok or not torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
        raise ValueError(
            "probs rows must be finite, non-negative and sum to 1; pass probabilities such as "
            "clf.predict_proba(x) or logits.softmax(-1), not logits"
        )
    return probs


def classifier_confidence(probs: Tensor) -> Tensor:
    """Mean over samples of the largest class probability: near 1 when every sample looks
    clearly like one class, 1 / num_classes for featureless samples."""
    return _check_probs(probs).amax(-1).mean()


def class_accuracy(probs: Tensor, requested_labels: Tensor) -> Tensor:
    """Fraction of class-conditional samples whose predicted class (argmax of ``probs``) is the
    class that was requested when generating them."""
    probs = _check_probs(probs)
    labels = requested_labels
    n, c = probs.shape
    if not isinstance(labels, Tensor) or labels.shape != (n,) or labels.is_floating_point():
        raise ValueError(
            f"requested_labels must be an integer tensor [{n}], one class per row of probs"
        )
    if labels.min() < 0 or labels.max() >= c:
        raise ValueError(f"requested_labels must lie in 0..{c - 1} (the classes of probs)")
    return (probs.argmax(-1) == labels.to(probs.device)).to(probs.dtype).mean()
