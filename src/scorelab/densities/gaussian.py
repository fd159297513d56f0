"""Gaussians and Gaussian mixtures, with exact Gaussian smoothing and exact denoisers.

Smoothing a mixture by noise gives a mixture again: if ``X ~ sum_k w_k N(mu_k, C_k)`` and
``Y = X + sigma N`` then ``Y ~ sum_k w_k N(mu_k, C_k + sigma^2 I)``, and the posterior mean is
``E[X | Y=y] = sum_k r_k(y) (mu_k + C_k (C_k + sigma^2 I)^{-1} (y - mu_k))`` with ``r_k`` the
responsibilities under the smoothed mixture. Each covariance is held by its eigendecomposition
``C_k = U_k diag(lambda_k) U_k^T`` (computed once, in float64), so every noise level costs the
same and ``lambda / (lambda + sigma^2)`` stays accurate from sigma = 1e-3 to 1e3.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from torch import Tensor

from scorelab._utils import (
    LOG_2PI,
    as_tensor,
    check_finite,
    check_points,
    check_positive,
    check_sigma,
    randn,
    scalars,
)
from scorelab.densities.base import Density

CovType = Literal["isotropic", "diagonal", "full"]


def _spectrum(covs: Tensor, k: int, d: int, name: str) -> tuple[Tensor, Tensor | None, CovType]:
    """Eigenvalues ``[k, d]`` and eigenvectors ``[k, d, d]`` (None unless full) of covariances.

    ``covs`` is a scalar (shared isotropic), ``[k]`` (isotropic per component), ``[k, d]``
    (diagonal) or ``[k, d, d]`` (full), in float64.
    """
    check_finite(covs, name)
    if covs.ndim in (0, 1, 2):
        if covs.shape not in ((), (k,), (k, d)):
            raise ValueError(
                f"{name} has shape {tuple(covs.shape)}; expected a scalar variance, [{k}] "
                f"(one variance per component), [{k}, {d}] (diagonal) or [{k}, {d}, {d}] (full)"
            )
        check_positive(covs, f"{name} (variances)")
        evals = covs.reshape(-1, 1).expand(k, d) if covs.ndim < 2 else covs
        return evals.clone(), None, "isotropic" if covs.ndim < 2 else "diagonal"
    if covs.shape != (k, d, d):
        raise ValueError(
            f"{name} has shape {tuple(covs.shape)}; expected [{k}, {d}, {d}] for full covariances"
        )
    asym = (covs - covs.mT).abs().amax()
    scale = covs.abs().amax().clamp_min(1e-300)
    if asym > 1e-6 * scale:
        raise ValueError(
            f"{name} is not symmetric (max |C - C^T| = {asym.item():.3g}); pass a symmetric "
            "positive definite matrix, e.g. (C + C.T) / 2"
        )
    evals, evecs = torch.linalg.eigh((covs + covs.mT) / 2)
    smallest = evals.amin(-1)
    bad = smallest <= 1e-12 * evals.amax(-1).abs()
    if bad.any():
        i = int(bad.nonzero()[0])
        where = f"{name}[{i}]" if k > 1 else name
        raise ValueError(
            f"{where} is not positive definite (smallest eigenvalue {smallest[i].item():.3g}); "
            "pass a symmetric positive definite covariance (add a small multiple of the identity "
            "if it is only semi-definite)"
        )
    return evals, evecs, "full"


class _GaussianFamily(Density):
    """Shared engine: a mixture of ``K`` Gaussians held as log-weights, means and spectra."""

    needs_autograd = False  # closed-form log p and score

    def _setup(self, weights: Tensor, means: Tensor, evals: Tensor, evecs: Tensor | None) -> None:
        self._logw, self._means, self._evals, self._evecs = weights.log(), means, evals, evecs
        self.dim = means.shape[-1]
        self.normalized = True
        self._cache: dict[tuple[torch.dtype, torch.device], tuple] = {}
        # one covariance shared by every component (a scalar covs, or K equal ones): MCMC's
        # inner loops then take the tied form of the score (_tied_score)
        self._tied = means.shape[0] > 1 and bool((evals == evals[:1]).all())
        if evecs is not None:
            self._tied = self._tied and bool((evecs == evecs[:1]).all())

    def _params(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Parameters in ``like``'s dtype and device (cached)."""
        key = (like.dtype, like.device)
        if key not in self._cache:
            ps = (self._logw, self._means, self._evals, self._evecs)
            self._cache[key] = tuple(
                None if p is None else p.to(dtype=like.dtype, device=like.device) for p in ps
            )
        return self._cache[key]

    # -- properties -----------------------------------------------------------------------
    @property
    def weights(self) -> Tensor:
        """Mixture weights ``[K]`` (float64)."""
        return self._logw.exp()

    @property
    def component_means(self) -> Tensor:
        """Component means ``[K, d]`` (float64)."""
        return self._means

    @property
    def component_covs(self) -> Tensor:
        """Component covariances ``[K, d, d]`` (float64)."""
        if self._evecs is None:
            return torch.diag_embed(self._evals)
        return self._evecs @ torch.diag_embed(self._evals) @ self._evecs.mT

    @property
    def mean(self) -> Tensor:
        """Mean ``[d]`` of the whole density (float64)."""
        return self.weights @ self._means

    @property
    def cov(self) -> Tensor:
        """Covariance ``[d, d]`` of the whole density (float64), by the law of total variance."""
        m = self.mean
        second = self.component_covs + self._means[:, :, None] * self._means[:, None, :]
        return torch.einsum("k,kde->de", self.weights, second) - torch.outer(m, m)

    # -- the engine ------------------------------------------------------------------------
    def _components(self, x: Tensor, sigma2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component log ``w_k N(x; mu_k, C_k + sigma^2 I)`` ``[B, K]``, eigen-coordinates
        ``z = U_k^T (x - mu_k)`` ``[B, K, d]`` and variances ``lambda_k + sigma^2`` ``[B|1, K, d]``.
        """
        logw, means, evals, evecs = self._params(x)
        var = evals + sigma2.unsqueeze(-1)  # [B|1, K, d]
        z = x.unsqueeze(1) - means  # [B, K, d]
        if evecs is not None:
            z = torch.einsum("bkd,kde->bke", z, evecs)
        logc = logw - 0.5 * ((z * z / var).sum(-1) + var.log().sum(-1) + self.dim * LOG_2PI)
        return logc, z, var

    def _condition(self, r: Tensor, cond: Tensor, batch_shape: torch.Size) -> Tensor:
        """Responsibilities with labelled rows set to their component (label ``K``: unchanged)."""
        k = r.shape[-1]
        cond = torch.as_tensor(cond, device=r.device)
        if cond.shape != batch_shape or cond.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"cond must be an integer tensor of shape {tuple(batch_shape)} (one component "
                f"index per point); got {cond.dtype} of shape {tuple(cond.shape)}"
            )
        cond = cond.reshape(-1)
        if ((cond < 0) | (cond > k)).any():
            raise ValueError(f"cond must lie in 0..{k} ({k} = no label); got {cond.tolist()}")
        labelled = cond < k
        one_hot = torch.nn.functional.one_hot(cond.clamp(max=k - 1), k).to(r)
        return torch.where(labelled.unsqueeze(-1), one_hot, r)

    @staticmethod
    def _responsibilities(logc: Tensor, z: Tensor, var: Tensor) -> Tensor:
        """``softmax(logc)`` over components; where every term underflowed to -inf (points
        ~1e154 standard deviations away), all weight goes to the component whose largest
        whitened coordinate is smallest, instead of 0/0. Branch-free, so it compiles into one
        graph (MCMC blocks)."""
        r = torch.softmax(logc, -1)
        # eagerly on the CPU a check is cheaper than the fallback's ops: a lost row is NaN
        # (0/0), so the sum is NaN where a row is lost (or was NaN already, which the
        # fallback leaves NaN)
        if not torch.compiler.is_compiling() and logc.device.type == "cpu":
            if not math.isnan(r.sum()):
                return r
        lost = torch.isneginf(logc).all(-1)
        nearest = (z.abs() / var.sqrt()).amax(-1).argmin(-1)  # [B]
        one_hot = torch.nn.functional.one_hot(nearest, logc.shape[-1]).to(r)
        return torch.where(lost.unsqueeze(-1), one_hot, r)

    def _unrotate_sum(self, g: Tensor, x: Tensor) -> Tensor:
        """``sum_k U_k g_k`` for eigen-coordinate vectors ``g`` ``[B, K, d]`` -> ``[B, d]``."""
        evecs = self._params(x)[3]
        return g.sum(1) if evecs is None else torch.einsum("bke,kde->bd", g, evecs)

    def _flat(self, x: Tensor, sigma: float | Tensor | None) -> tuple[Tensor, Tensor]:
        """``x`` as ``[B, d]`` and ``sigma^2`` as ``[B, 1]`` or ``[1, 1]`` (0 when ``None``)."""
        check_points(x, self.dim)
        if sigma is None:
            s = torch.zeros(1, dtype=x.dtype, device=x.device)
        else:
            s = check_sigma(sigma, x)
            flat = s.reshape(-1)
            if flat.numel() > 1 and bool((flat == flat[0]).all()):
                s = flat[:1]  # one shared sigma: broadcast [1, K, d] variances, not [B, K, d]
        return x.reshape(-1, self.dim), s.reshape(-1, 1) ** 2

    def smoothed_log_prob(self, x: Tensor, sigma: float | Tensor | None) -> Tensor:
        """``log p_sigma(x)`` of ``X + sigma N``; ``sigma`` scalar, one per point, or ``None``
        (no smoothing: ``log p(x)``)."""
        xf, s2 = self._flat(x, sigma)
        return torch.logsumexp(self._components(xf, s2)[0], -1).reshape(x.shape[:-1])

    def smoothed_score(self, x: Tensor, sigma: float | Tensor | None) -> Tensor:
        """``grad log p_sigma(x) = -sum_k r_k (C_k + sigma^2 I)^{-1} (x - mu_k)`` (``None``:
        the unsmoothed score)."""
        xf, s2 = self._flat(x, sigma)
        return self._score_flat(xf, s2).reshape(x.shape)

    def smoothed_class_log_prob(self, x: Tensor, sigma: float | Tensor | None) -> Tensor:
        """``log P(k | X + sigma N = x)`` ``[..., K]``: the exact noise-conditional classifier
        when the component index is the class, ``log w_k N(x; mu_k, C_k + sigma^2 I) -
        log p_sigma(x)``."""
        xf, s2 = self._flat(x, sigma)
        logc = self._components(xf, s2)[0]
        return torch.log_softmax(logc, -1).reshape(*x.shape[:-1], logc.shape[-1])

    def denoise(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """Exact posterior mean ``E[X | X + sigma N = x]`` (the ideal denoiser ``D(x, sigma)``).

        ``cond`` (int64 ``[batch]``) treats the component index as a class label: the exact
        class-conditional denoiser ``E[X | X + sigma N = x, k = cond]``; the value ``K`` (one
        past the last component) means "no label", as in classifier-free guidance.
        """
        xf, s2 = self._flat(x, sigma)
        logc, z, var = self._components(xf, s2)
        r = self._responsibilities(logc, z, var)  # [B, K]
        if cond is not None:
            r = self._condition(r, cond, x.shape[:-1])
        evals = self._params(x)[2]
        shrunk = r.unsqueeze(-1) * z * (evals / var)  # posterior deviation, eigen coords
        out = r @ self._params(x)[1] + self._unrotate_sum(shrunk, xf)
        return out.reshape(x.shape)

    def smoothed(self, sigma: float) -> _GaussianFamily:
        """The exact density of ``X + sigma N``: covariances become ``C_k + sigma^2 I``."""
        sigma = as_tensor(sigma, "sigma", torch.float64)
        if sigma.ndim != 0:
            raise ValueError(
                f"sigma must be a scalar for smoothed(); got shape {tuple(sigma.shape)} "
                "(use smoothed_log_prob / smoothed_score / denoise for one sigma per point)"
            )
        check_positive(sigma, "sigma")
        new = copy.copy(self)
        new._setup(self.weights, self._means, self._evals + sigma**2, self._evecs)
        return new

    def _score_flat(self, xf: Tensor, s2: Tensor) -> Tensor:
        return self._value_and_score_flat(xf, s2)[1]

    def _value_and_score_flat(self, xf: Tensor, s2: Tensor) -> tuple[Tensor, Tensor]:
        logc, z, var = self._components(xf, s2)
        r = self._responsibilities(logc, z, var)  # [B, K]
        return torch.logsumexp(logc, -1), -self._unrotate_sum(r.unsqueeze(-1) * z / var, xf)

    def _unsmoothed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Unsmoothed fast path for MCMC inner loops (what ``_value_and_score_flat`` computes
        at ``sigma = 0``, with ``-1 / lambda_k`` and each component's normalizing constant
        precomputed and no input checks): ``c_k = log w_k - (z_k . z_k / lambda_k + log det 2
        pi C_k) / 2`` ``[B, K]`` and ``score = -sum_k r_k U_k (z_k / lambda_k)``. The sign sits
        in ``w_k = -z_k / lambda_k``, so the score needs no negation (the same bits)."""
        key = (x.dtype, x.device, "unsmoothed")
        if key not in self._cache:
            logw, means, evals, evecs = self._params(x)
            const = logw - 0.5 * (evals.log().sum(-1) + self.dim * LOG_2PI)
            self._cache[key] = (const, means, evals, -1 / evals)
        const, means, evals, neg_inv = self._cache[key]
        xf = x if x.ndim == 2 else x.reshape(-1, self.dim)
        z = xf.unsqueeze(1) - means  # [B, K, d]
        evecs = self._params(x)[3]
        if evecs is not None:
            z = torch.einsum("bkd,kde->bke", z, evecs)
        w = z * neg_inv
        # const + (z . w) / 2 in one call: halving is exact, so no rounding differs from the
        # two-call form (nor from a fused multiply-add)
        logc = torch.add(const, (z * w).sum(-1), alpha=0.5)
        r = self._responsibilities(logc, z, evals)
        score = self._unrotate_sum(r.unsqueeze(-1) * w, xf)
        return logc, score if x.ndim == 2 else score.reshape(x.shape)

    def _tied_score(self, x: Tensor) -> Tensor:
        """The unsmoothed score when every component has the same covariance ``C`` (precision
        ``P``), for MCMC's inner loops. Then ``c_k = l_k - (x - m)^T P (x - m) / 2`` with
        logits ``l_k = (x - m) . P (mu_k - m) + log w_k - (mu_k - m)^T P (mu_k - m) / 2``,
        linear in ``x``: the quadratic is common to every ``c_k`` and cancels in the
        responsibilities ``r = softmax(l)``, so

            score = -P (x - m) + sum_k r_k P (mu_k - m),

        two matrix products and a softmax instead of ``[B, K, d]`` differences and reductions
        (4 ATen calls against 10; about 2x faster at 64 chains in 2-D). ``m`` is the mixture's
        mean (skipped when it is 0): logits of means far from the origin would otherwise be
        large numbers whose differences lose digits. The score alone: ``log p`` and the
        score beside it stay with the per-component form (``_value_and_score``), whose
        ``(x - mu_k)^2`` loses nothing near a mode. A leapfrog or a Langevin proposal stays
        exactly reversible with any deterministic score, so rounding here only moves the
        acceptance rate. Constants are formed in float64, cached per dtype and device."""
        key = (x.dtype, x.device, "tied")
        if key not in self._cache:
            evals, evecs = self._evals[0], None if self._evecs is None else self._evecs[0]
            inv = 1 / evals
            prec = torch.diag(inv) if evecs is None else (evecs * inv) @ evecs.T
            center = self.weights @ self._means  # the mixture's mean
            mu = self._means - center
            pm = mu @ prec  # [K, d]: P (mu_k - m), P symmetric
            b = self._logw - 0.5 * (pm * mu).sum(-1)
            neg = -inv if evecs is None else -prec
            parts = (pm.T.contiguous(), b, pm, neg, None if (center == 0).all() else center)
            self._cache[key] = tuple(None if t is None else t.to(x) for t in parts)
        a, b, pm, neg, center = self._cache[key]
        xf = x if x.ndim == 2 else x.reshape(-1, self.dim)
        if center is not None:
            xf = xf - center
        neg_px = xf * neg if neg.ndim == 1 else xf @ neg
        score = torch.addmm(neg_px, torch.softmax(torch.addmm(b, xf, a), -1), pm)
        return score if x.ndim == 2 else score.reshape(x.shape)

    def _value_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``log p = logsumexp_k c_k`` and the score (``_unsmoothed``)."""
        logc, score = self._unsmoothed(x)
        lp = torch.logsumexp(logc, -1)
        return lp if x.ndim == 2 else lp.reshape(x.shape[:-1]), score

    def _inner_score(self, x: Tensor) -> Tensor:
        return self._tied_score(x) if self._tied else self._unsmoothed(x)[1]

    def _log_prob(self, x: Tensor) -> Tensor:
        return self.smoothed_log_prob(x, None)

    def _score(self, x: Tensor) -> Tensor:
        return self.smoothed_score(x, None)

    def _sample(
        self, n: int, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        like = torch.empty(0, dtype=dtype, device=device)
        logw, means, evals, evecs = self._params(like)
        k = logw.shape[0]
        eps = randn((n, self.dim), generator, dtype, device)
        if k == 1 or n == 0:
            comp = torch.zeros(n, dtype=torch.long, device=device)
        else:
            gen_dev = generator.device if generator is not None else device
            w = self.weights.to(gen_dev)
            comp = torch.multinomial(w, n, replacement=True, generator=generator).to(device)
        out = torch.empty_like(eps)
        for j in range(k):
            idx = comp == j
            dev = eps[idx] * evals[j].sqrt()
            out[idx] = means[j] + (dev if evecs is None else dev @ evecs[j].mT)
        return out


class GaussianMixture(_GaussianFamily):
    """``p(x) = sum_k w_k N(x; mu_k, C_k)`` on ``R^d``, normalized, with exact smoothing.

    Args:
        weights: ``[K]`` non-negative, summing to one.
        means: ``[K, d]``.
        covs: a scalar variance shared by all components, ``[K]`` (isotropic per component),
            ``[K, d]`` (diagonal) or ``[K, d, d]`` (full, symmetric positive definite).
    """

    def __init__(self, weights: object, means: object, covs: object = 1.0):
        w = as_tensor(weights, "weights", torch.float64)
        mu = as_tensor(means, "means", torch.float64)
        if w.ndim != 1 or w.numel() == 0:
            raise ValueError(f"weights must be a non-empty 1-D [K] array; got {tuple(w.shape)}")
        check_finite(w, "weights")
        if (w < 0).any():
            i = int((w < 0).nonzero()[0])
            raise ValueError(f"weights must be non-negative; got weights[{i}] = {w[i].item()}")
        total = w.sum().item()
        if abs(total - 1.0) > 1e-5:
            raise ValueError(f"weights sum to {total:.6g}, not 1; pass weights / weights.sum()")
        k = w.numel()
        if mu.ndim != 2 or mu.shape[0] != k or mu.shape[1] == 0:
            raise ValueError(
                f"means has shape {tuple(mu.shape)}; expected [{k}, d]: one mean per weight"
            )
        check_finite(mu, "means")
        c = as_tensor(covs, "covs", torch.float64)
        evals, evecs, self.cov_type = _spectrum(c, k, mu.shape[1], "covs")
        self._setup(w / w.sum(), mu, evals, evecs)

    def __repr__(self) -> str:
        k = self._means.shape[0]
        return f"GaussianMixture(K={k}, dim={self.dim}, cov_type={self.cov_type!r})"


class Gaussian(_GaussianFamily):
    """``N(mean, cov)`` on ``R^d``, normalized, with exact smoothing.

    Args:
        mean: ``[d]``.
        cov: a scalar variance (isotropic ``cov * I``), ``[d]`` (diagonal variances) or
            ``[d, d]`` (full, symmetric positive definite).
    """

    def __init__(self, mean: object, cov: object = 1.0):
        mu = as_tensor(mean, "mean", torch.float64)
        if mu.ndim != 1 or mu.numel() == 0:
            raise ValueError(f"mean must be a non-empty 1-D [d] array; got {tuple(mu.shape)}")
        check_finite(mu, "mean")
        d = mu.numel()
        c = as_tensor(cov, "cov", torch.float64)
        if c.shape not in ((), (d,), (d, d)):
            raise ValueError(
                f"cov has shape {tuple(c.shape)}; expected a scalar variance, [{d}] (diagonal) "
                f"or [{d}, {d}] (full) to match mean of shape [{d}]"
            )
        c = c.reshape(1) if c.ndim == 0 else c.unsqueeze(0)
        evals, evecs, self.cov_type = _spectrum(c, 1, d, "cov")
        self._setup(torch.ones(1, dtype=torch.float64), mu.unsqueeze(0), evals, evecs)

    def _diff_and_score(self, x: Tensor) -> tuple[Tensor, Tensor, float]:
        """``x - mu``, the score ``-P (x - mu)`` and ``-(log det 2 pi C) / 2``, with ``-P``
        precomputed (cached per dtype and device): a ``[d]`` vector for isotropic and
        diagonal covariances, so no ``d x d`` product."""
        key = (x.dtype, x.device, "precision")
        if key not in self._cache:
            inv = 1 / self._evals[0]
            prec = inv if self._evecs is None else (self._evecs[0] * inv) @ self._evecs[0].T
            const = -0.5 * (self._evals[0].log().sum() + self.dim * LOG_2PI)
            self._cache[key] = ((-prec).to(x), self._means[0].to(x), float(const))
        neg_prec, mean, const = self._cache[key]
        diff = x - mean
        return diff, diff * neg_prec if neg_prec.ndim == 1 else diff @ neg_prec, const

    def _value_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Unsmoothed fast path for MCMC inner loops: ``score = -P (x - mu)``,
        ``log p = (x - mu) . score / 2 - (log det 2 pi C) / 2``."""
        diff, score, const = self._diff_and_score(x)
        half, const = scalars(x, 0.5, const)
        return (diff * score).sum(-1) * half + const, score

    def _inner_score(self, x: Tensor) -> Tensor:
        return self._diff_and_score(x)[1]

    def _log_prob(self, x: Tensor) -> Tensor:
        return self._value_and_score(x)[0]

    def _score(self, x: Tensor) -> Tensor:
        return self._value_and_score(x)[1]

    def __repr__(self) -> str:
        return f"Gaussian(dim={self.dim}, cov_type={self.cov_type!r})"
