"""A small U-Net for images ``[B, C, H, W]``: the raw network ``F(x_in, c_noise, cond)``.

The layout follows Ho et al. 2020 and Dhariwal & Nichol 2021 (ADM), scaled down for 8x8 to
32x32 images: a 3x3 input convolution, then per resolution level ``num_res_blocks`` residual
blocks (GroupNorm, SiLU, 3x3 conv; the noise/class embedding enters as a per-channel scale and
shift after the second GroupNorm, ADM's "scale-shift norm"), optional single-head
self-attention, and a strided-conv downsample; a middle block; the mirror-image decoder with
skip connections concatenated from the encoder and nearest-neighbour + conv upsampling; and a
GroupNorm, SiLU, 3x3 output convolution back to ``in_channels`` channels.

``attention_resolutions`` lists downsampling factors, as in ADM: ``(2,)`` puts attention on
the level that works at half the input resolution; the middle block gets attention when the
deepest level's factor is listed.

Initialization: PyTorch's default; with ``zero_init=True`` (the default) the output convolution,
the last convolution of every residual branch and every attention projection start at zero
(ADM's ``zero_module``), so each block starts as the identity and ``F = 0``: every wrapper in
:mod:`scorelab.nets.denoisers` starts from its skip path alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from scorelab._utils import append_dims
from scorelab.nets._common import check_c_noise, check_dtype, check_int, check_x, seeded
from scorelab.nets.embeddings import ConditionEmbedding


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, scale/shift by the embedding, GroupNorm-SiLU-dropout-conv, plus a
    (1x1-projected) skip (Dhariwal & Nichol 2021)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        scale, shift = append_dims(self.emb(e), h.ndim).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(self.act(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the ``H*W`` positions, with a residual (Vaswani et al.
    2017, as placed in U-Nets by Ho et al. 2020); written out so it is twice differentiable."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, -1).unbind(1)
        w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)
        out = torch.einsum("bij,bcj->bci", w, v).reshape(x.shape)
        return x + self.proj(out)


class _Block(nn.Module):
    """A residual block, optionally followed by self-attention."""

    def __init__(self, cin: int, cout: int, attn: bool, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.res = ResBlock(cin, cout, emb_dim, dropout, groups)
        self.attn = SelfAttention(cout, groups) if attn else None

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        h = self.res(x, e)
        return h if self.attn is None else self.attn(h)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """``F(x_in [B, C, H, W], c_noise [B], cond [B] | None) -> [B, C, H, W]``: a small U-Net
    (Ronneberger et al. 2015; Ho et al. 2020; Dhariwal & Nichol 2021).

    H and W must be divisible by ``2 ** (len(channel_mult) - 1)``; ``groups`` must divide
    ``base_channels`` and every ``base_channels * channel_mult[i]``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 32,
        channel_mult: Sequence[int] = (1, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        emb_dim: int = 128,
        embedding: str = "fourier",
        num_classes: int | None = None,
        groups: int = 8,
        zero_init: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_int(in_channels, "in_channels")
        check_int(base_channels, "base_channels")
        check_int(num_res_blocks, "num_res_blocks")
        check_int(emb_dim, "emb_dim", 2)
        check_int(groups, "groups")
        if num_classes is not None:
            check_int(num_classes, "num_classes")
        channel_mult = tuple(channel_mult)
        if not channel_mult:
            raise ValueError("channel_mult must list at least one level, e.g. (1, 2)")
        for i, m in enumerate(channel_mult):
            check_int(m, f"channel_mult[{i}]")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        factors = [2**i for i in range(len(channel_mult))]
        attention_resolutions = tuple(attention_resolutions)
        for r in attention_resolutions:
            if r not in factors:
                raise ValueError(
                    f"attention_resolutions holds {r!r}, which is not a downsampling factor of "
                    f"this U-Net; with {len(channel_mult)} level(s) choose from {factors} "
                    f"(1 = input resolution, 2 = half, ...)"
                )
        chans = [base_channels] + [base_channels * m for m in channel_mult]
        for c in chans:
            if c % groups:
                common = math.gcd(*chans)
                ok = max(d for d in range(1, min(groups, common) + 1) if common % d == 0)
                raise ValueError(
                    f"groups={groups} does not divide {c} channels (base_channels="
                    f"{base_channels}, channel_mult={channel_mult}); choose groups dividing "
                    f"base_channels and every base_channels * channel_mult[i] (e.g. "
                    f"groups={ok}) or change base_channels"
                )
        self.in_channels = in_channels
        self.levels = len(channel_mult)
        self.num_classes = num_classes
        self._config = dict(
            in_channels=in_channels,
            base_channels=base_channels,
            channel_mult=list(channel_mult),
            num_res_blocks=num_res_blocks,
            attention_resolutions=list(attention_resolutions),
            dropout=dropout,
            emb_dim=emb_dim,
            embedding=embedding,
            num_classes=num_classes,
            groups=groups,
            zero_init=zero_init,
            seed=seed,
        )
        args = (emb_dim, dropout, groups)
        with seeded(seed):
            self.embed = ConditionEmbedding(emb_dim, embedding, num_classes, seed=seed)
            self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
            self.down = nn.ModuleList()
            skip_chs, ch = [base_channels], base_channels
            for i, mult in enumerate(channel_mult):
                attn = factors[i] in attention_resolutions
                for _ in range(num_res_blocks):
                    self.down.append(_Block(ch, base_channels * mult, attn, *args))
                    ch = base_channels * mult
                    skip_chs.append(ch)
                if i < self.levels - 1:
                    self.down.append(Downsample(ch))
                    skip_chs.append(ch)
            mid_attn = factors[-1] in attention_resolutions
            self.mid = nn.ModuleList(
                [_Block(ch, ch, mid_attn, *args), _Block(ch, ch, False, *args)]
            )
            self.up = nn.ModuleList()
            for i, mult in reversed(list(enumerate(channel_mult))):
                attn = factors[i] in attention_resolutions
                for j in range(num_res_blocks + 1):
                    self.up.append(_Block(ch + skip_chs.pop(), base_channels * mult, attn, *args))
                    ch = base_channels * mult
                    if i > 0 and j == num_res_blocks:
                        self.up.append(Upsample(ch))
            self.out = nn.Sequential(
                nn.GroupNorm(groups, ch), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, padding=1)
            )
        if zero_init:
            zeroed = [self.out[-1]]
            for m in self.modules():
                if isinstance(m, ResBlock):
                    zeroed.append(m.conv2)
                elif isinstance(m, SelfAttention):
                    zeroed.append(m.proj)
            for conv in zeroed:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def config(self) -> dict:
        """Constructor keyword arguments (JSON-serializable): ``UNet(**config())`` rebuilds it."""
        return dict(self._config)

    def _check(self, x: Tensor) -> None:
        check_x(x, "x_in")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x_in has shape {tuple(x.shape)}; the UNet expects images [batch, "
                f"{self.in_channels}, H, W] (in_channels={self.in_channels}); reshape the input "
                f"or build the UNet with in_channels matching it"
            )
        f = 2 ** (self.levels - 1)
        h, w = x.shape[2:]
        if h % f or w % f:
            raise ValueError(
                f"x_in has spatial size {h}x{w}, but the UNet downsamples {self.levels - 1} "
                f"time(s), so H and W must be divisible by {f}; pad or resize the images to a "
                f"multiple of {f}, or use fewer levels in channel_mult"
            )
        check_dtype(x, self, "x_in")

    def forward(self, x_in: Tensor, c_noise: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, C, H, W]``."""
        self._check(x_in)
        e = self.embed(check_c_noise(c_noise, x_in), cond)
        h = self.conv_in(x_in)
        skips = [h]
        for m in self.down:
            h = m(h, e) if isinstance(m, _Block) else m(h)
            skips.append(h)
        for m in self.mid:
            h = m(h, e)
        for m in self.up:
            h = m(torch.cat([h, skips.pop()], dim=1), e) if isinstance(m, _Block) else m(h)
        return self.out(h)
