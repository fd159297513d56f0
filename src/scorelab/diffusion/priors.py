"""Where a sampler starts: the sigma-space prior at ``sigma_max``.

The usual prior is ``N(0, prior_std^2 I)`` (``Process.prior``). It is the marginal at
``sigma_max`` only when the data are centred and ``sigma_max`` dwarfs their spread. The
data-aware prior ``N(mean, cov + sigma_max^2 I)`` has the exact mean and covariance of the
smoothed data ``X + sigma_max N`` for any ``sigma_max``, so a smaller ``sigma_max`` (fewer,
better-spent steps) no longer shifts mass between modes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scorelab._utils import randn


@dataclass(frozen=True)
class DataPrior:
    """``N(mean, cov + sigma^2 I)`` over flattened events: the moments of ``X + sigma N``.

    ``mean`` is ``[d]``; ``cov`` is ``[d, d]`` (full), ``[d]`` (per-coordinate variances) or
    ``[]`` (one variance for every coordinate), float64 on the CPU.
    """

    mean: Tensor  # [d]
    cov: Tensor  # [d, d], [d] or []

    @classmethod
    def from_moments(cls, mean: object, cov: object, dim: int) -> DataPrior:
        """Validate user moments for events of ``dim`` numbers (``mean``: a number or ``[d]``
        values, or one per event element; ``cov``: a number, ``[d]`` or ``[d, d]``)."""
        m = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        m = m.expand(dim).clone() if m.numel() == 1 else m
        c = torch.as_tensor(cov, dtype=torch.float64)
        c = c.reshape(-1) if c.ndim > 1 and c.numel() == dim else c  # [*event] variances
        if m.numel() != dim:
            raise ValueError(f"prior mean must have 1 or {dim} values; got {m.numel()}")
        if c.shape not in ((), (dim,), (dim, dim)):
            raise ValueError(
                f"prior cov must be a number, [{dim}] variances or a [{dim}, {dim}] matrix; "
                f"got shape {tuple(c.shape)}"
            )
        if not (torch.isfinite(m).all() and torch.isfinite(c).all()):
            raise ValueError("prior mean and cov must be finite")
        if c.ndim < 2 and (c < 0).any():
            raise ValueError(f"prior variances must be >= 0; got min {float(c.min()):.3g}")
        if c.ndim == 2 and not torch.allclose(c, c.T, rtol=1e-6, atol=1e-12):
            raise ValueError("prior cov must be symmetric")
        return cls(m, c)

    @classmethod
    def known(cls, model: object, dim: int) -> DataPrior | None:
        """The moments a model knows, or ``None``: a known density's ``mean`` and ``cov``, or
        a network's ``data_moments`` (``(mean, cov)``, set by ``scorelab sample`` from the
        run's data), also through wrappers such as guidance, via ``.model``."""
        for _ in range(16):
            mean, cov = getattr(model, "mean", None), getattr(model, "cov", None)
            if isinstance(mean, Tensor) and isinstance(cov, Tensor):
                return cls.from_moments(mean, cov, dim)
            moments = getattr(model, "data_moments", None)
            if isinstance(moments, tuple) and len(moments) == 2:
                return cls.from_moments(*moments, dim=dim)
            model = getattr(model, "model", None)
            if model is None:
                break
        return None

    @classmethod
    def from_model(cls, model: object, dim: int) -> DataPrior:
        """``known``, or a ``ValueError`` saying how to give the moments."""
        prior = cls.known(model, dim)
        if prior is not None:
            return prior
        raise ValueError(
            "prior='data' needs the data's moments: pass prior_moments=(mean, cov), or a model "
            "with .mean and .cov tensors (such as scorelab.densities.GaussianMixture)"
        )

    def variance(self) -> float:
        """The mean per-coordinate variance, ``trace(cov) / d``."""
        c = self.cov
        per = torch.diagonal(c) if c.ndim == 2 else c.expand(self.mean.numel())
        return float(per.mean())

    def sample(
        self,
        n: int,
        shape: tuple[int, ...],
        sigma: float,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """``n`` draws of ``N(mean, cov + sigma^2 I)``, ``[n, *shape]``."""
        z = randn((n, self.mean.numel()), generator, dtype, device)  # [n, d]
        mean = self.mean.to(dtype=dtype, device=device)
        if self.cov.ndim == 2:  # factor in float64 on the CPU (MPS has no float64)
            eye = torch.eye(len(self.cov), dtype=torch.float64)
            chol = torch.linalg.cholesky(self.cov + sigma**2 * eye).to(dtype=dtype, device=device)
            x = mean + z @ chol.T
        else:
            x = mean + z * torch.sqrt(self.cov + sigma**2).to(dtype=dtype, device=device)
        return x.reshape(n, *shape)
