"""A noise-conditional classifier ``p_phi(y | x_sigma, sigma)`` for classifier guidance."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from scorelab._utils import append_dims, check_positive
from scorelab.nets._common import check_int
from scorelab.nets.embeddings import FourierEmbedding


class NoisyClassifier(nn.Module):
    """Class logits of a noisy example: ``f(c_in x, c_noise) -> [B, num_classes]`` with EDM's
    ``c_in = 1 / sqrt(sigma^2 + sigma_data^2)`` and ``c_noise = log(sigma) / 4`` (Karras et al.
    2022), so inputs stay of unit scale at every noise level.

    Vectors ``[B, D]``: a SiLU MLP (``depth`` layers of ``width``), the noise embedding added
    after the first layer. Images ``[B, C, H, W]``: three 3x3 convolutions (``width // 2``,
    ``width``, ``width`` channels; the last two with stride 2) with the embedding added as a
    per-channel bias after the first, global average pooling and a linear head.
    """

    def __init__(self, event_shape: tuple[int, ...] | list[int], num_classes: int,
                 width: int = 128, depth: int = 3, sigma_data: float = 0.5,
                 seed: int = 0) -> None:  # fmt: skip
        super().__init__()
        shape = tuple(event_shape)
        if len(shape) not in (1, 3):
            raise ValueError(f"event_shape must be (D,) or (C, H, W); got {event_shape!r}")
        check_int(num_classes, "num_classes", 2)
        check_int(width, "width", 2)
        check_int(depth, "depth", 1)
        self.event_shape, self.num_classes, self.sigma_data = shape, num_classes, sigma_data
        self._config = {"event_shape": list(shape), "num_classes": num_classes, "width": width,
                        "depth": depth, "sigma_data": sigma_data, "seed": seed}  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embed = nn.Sequential(FourierEmbedding(64, seed=seed), nn.Linear(64, width),
                                       nn.SiLU())  # fmt: skip
            if len(shape) == 1:
                self.first = nn.Linear(shape[0], width)
                layers: list[nn.Module] = []
                for _ in range(depth - 1):
                    layers += [nn.SiLU(), nn.Linear(width, width)]
                self.body = nn.Sequential(*layers, nn.SiLU())
            else:
                w = width
                self.first = nn.Conv2d(shape[0], w, 3, padding=1)
                self.body = nn.Sequential(
                    nn.SiLU(), nn.Conv2d(w, w, 3, stride=2, padding=1),
                    nn.SiLU(), nn.Conv2d(w, w, 3, stride=2, padding=1),
                    nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                )  # fmt: skip
            self.head = nn.Linear(width, num_classes)

    def config(self) -> dict:
        """Constructor arguments: ``NoisyClassifier(**config())``."""
        return dict(self._config)

    def forward(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` for noisy ``x`` at noise level ``sigma``."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        check_positive(sigma, "sigma")
        sigma = sigma.expand(x.shape[0])
        c_in = append_dims((sigma**2 + self.sigma_data**2).rsqrt(), x.ndim)
        h = self.first(c_in * x)
        emb = self.embed(sigma.log() / 4)
        h = h + (emb if h.ndim == 2 else emb[:, :, None, None])
        return self.head(self.body(h))


def train_noisy_classifier(
    x: Tensor,
    labels: Tensor,
    *,
    num_classes: int | None = None,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 2e-3,
    width: int = 128,
    generator: torch.Generator | None = None,
) -> NoisyClassifier:
    """Fit ``p_phi(y | x + sigma n, sigma)`` by cross-entropy on noised training data, ``sigma``
    log-uniform on ``[sigma_min, sigma_max]`` (the guidance needs every level a sampler visits),
    AdamW with a cosine-decayed rate; returned in eval mode on ``x``'s device."""
    if labels.shape != x.shape[:1] or labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor [{x.shape[0]}], one per example of x")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    gen_device = generator.device if generator is not None else x.device
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=gen_device))
    sigma_data = round(float(x.std()), 4)
    model = NoisyClassifier(tuple(x.shape[1:]), num_classes, width=width, sigma_data=sigma_data,
                            seed=seed).to(x.device)  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    log_lo, log_hi = math.log(sigma_min), math.log(sigma_max)
    labels = labels.long().to(x.device)
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(len(x), (batch_size,), generator=generator, device=gen_device)
        u = torch.rand(batch_size, generator=generator, device=gen_device)
        noise = torch.randn((batch_size, *x.shape[1:]), generator=generator, device=gen_device)
        idx, u, noise = idx.to(x.device), u.to(x.device), noise.to(x.device)
        sigma = torch.exp(log_lo + (log_hi - log_lo) * u)
        noisy = x[idx] + append_dims(sigma, x.ndim) * noise
        loss = nn.functional.cross_entropy(model(noisy, sigma), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()
