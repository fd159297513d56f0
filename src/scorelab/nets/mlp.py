"""A conditioned multilayer perceptron for vector data: the raw network ``F(x_in, c_noise, cond)``.

Each hidden layer is ``h <- SiLU(W h + b + P e)``, where ``e = ConditionEmbedding(c_noise, cond)``
is the shared noise (+ class) embedding and ``P`` a per-layer projection (the embedding is
*added* to every layer's pre-activation, as in the time-conditioned MLPs of Ho et al. 2020).

Initialization: PyTorch's default for every layer, except that with ``zero_init=True`` (the
default) the output layer starts at zero, so ``F = 0`` at initialization and every wrapper in
:mod:`scorelab.nets.denoisers` starts from its skip path alone (``D = x`` for score and eps
networks, ``D = c_skip x`` for EDM): a well-scaled starting point that Karras et al. 2022 and
Dhariwal & Nichol 2021 use. Pass ``zero_init=False`` for a generic random network.
"""

from __future__ import annotations

import itertools
import math

from torch import Tensor, nn

from scorelab.nets._common import check_c_noise, check_dtype, check_int, check_x, seeded
from scorelab.nets.embeddings import ConditionEmbedding


class MLP(nn.Module):
    """``F(x_in [B, dim], c_noise [B], cond [B] | None) -> [B, out_dim]`` with SiLU and per-layer
    additive noise/class embeddings.

    ``depth`` counts the hidden layers (each ``hidden`` wide); ``out_dim`` defaults to ``dim``
    (a vector field) and ``out_dim=1`` gives a scalar (an energy). Inputs ``[B, *event]`` with
    ``prod(event) == dim`` are flattened, and an output of width ``dim`` is reshaped back to
    ``x``'s shape, so the MLP also runs on small images.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 4,
        emb_dim: int = 128,
        embedding: str = "fourier",
        num_classes: int | None = None,
        out_dim: int | None = None,
        zero_init: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim")
        self.out_dim = dim if out_dim is None else check_int(out_dim, "out_dim")
        check_int(hidden, "hidden")
        check_int(depth, "depth")
        check_int(emb_dim, "emb_dim", 2)
        if num_classes is not None:
            check_int(num_classes, "num_classes")
        self.num_classes = num_classes
        self._config = dict(
            dim=dim,
            hidden=hidden,
            depth=depth,
            emb_dim=emb_dim,
            embedding=embedding,
            num_classes=num_classes,
            out_dim=out_dim,
            zero_init=zero_init,
            seed=seed,
        )
        with seeded(seed):
            self.embed = ConditionEmbedding(emb_dim, embedding, num_classes, seed=seed)
            widths = [dim] + [hidden] * depth
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
            self.emb_proj = nn.ModuleList(nn.Linear(emb_dim, hidden) for _ in range(depth))
            self.out = nn.Linear(hidden, self.out_dim)
        if zero_init:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        self.act = nn.SiLU()

    def config(self) -> dict:
        """Constructor keyword arguments (JSON-serializable): ``MLP(**config())`` rebuilds it."""
        return dict(self._config)

    def forward(self, x_in: Tensor, c_noise: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """``[B, dim]`` (or ``[B, *event]``, ``prod(event) == dim``) -> ``[B, out_dim]``."""
        check_x(x_in, "x_in")
        batch = x_in.shape[0]
        n = math.prod(x_in.shape[1:])
        if n != self.dim:
            raise ValueError(
                f"x_in has shape {tuple(x_in.shape)} ({n} features per sample) but the MLP was "
                f"built with dim={self.dim}; build it with dim={n} or reshape x_in to "
                f"[batch, {self.dim}]"
            )
        check_dtype(x_in, self, "x_in")
        e = self.embed(check_c_noise(c_noise, x_in), cond)
        h = x_in.reshape(batch, n)
        for layer, proj in zip(self.layers, self.emb_proj, strict=True):
            h = self.act(layer(h) + proj(e))
        out = self.out(h)
        if self.out_dim == self.dim and x_in.ndim > 2:
            out = out.reshape(x_in.shape)
        return out
