"""MCMC convergence diagnostics: rank-normalized split R-hat, bulk/tail ESS and MCSE.

Implements Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization, folding,
and localization: an improved R-hat for assessing convergence of MCMC", Bayesian Analysis 16(2)
(arXiv:1903.08008), and reproduces ``arviz.ess``, ``arviz.rhat`` and ``arviz.mcse`` up to
floating-point rounding.

Every function takes ``samples`` shaped ``[chains, draws]`` or ``[chains, draws, dim]`` (torch
tensor or numpy array), computes in float64 numpy, and returns a float64 tensor shaped ``[]`` or
``[dim]``. Chains are split in halves (the middle draw is dropped for odd ``draws``), so a single
chain works everywhere, R-hat included (ArviZ returns NaN for R-hat on one chain).

Constant input: a coordinate whose draws are all equal has no meaningful ESS or R-hat; both are
NaN there (so is MCSE), never an error. ArviZ also gives NaN for R-hat but reports ESS = N (and
MCSE = 0) for a constant coordinate; R's ``posterior`` package returns NA, as here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import fft, special, stats

__all__ = [
    "Check",
    "Summary",
    "autocorrelation",
    "bfmi",
    "ess",
    "mcse",
    "rhat",
    "summary",
    "verdict",
]

_COLUMNS = ("mean", "sd", "q5", "q50", "q95", "mcse_mean", "ess_bulk", "ess_tail", "r_hat")


def _as_array(samples: torch.Tensor | np.ndarray) -> tuple[np.ndarray, bool]:
    """Validate ``samples``; return float64 ``[chains, draws, dim]`` and whether dim was added."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().to(torch.float64).numpy()
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(
            f"samples must be [chains, draws] or [chains, draws, dim]; got shape {tuple(x.shape)}. "
            "Stack chains along dim 0 and draws along dim 1 (use samples[None] for one chain)."
        )
    if x.shape[0] < 1 or x.shape[-1] < 1:
        raise ValueError(f"samples needs at least one chain and one coordinate; got {x.shape}.")
    if x.shape[1] < 4:
        raise ValueError(
            f"samples needs at least 4 draws per chain to split chains; got {x.shape[1]} "
            f"(shape {tuple(x.shape)}). Run the sampler longer."
        )
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"samples contains {int(bad.sum())} non-finite value(s) (NaN/inf); the first is at "
            f"index {first}. Drop or fix diverged draws before computing diagnostics."
        )
    return (x[..., None], True) if x.ndim == 2 else (x, False)


def _constant(x: np.ndarray) -> np.ndarray:
    """Per-coordinate flag: all draws of all chains (numerically) equal."""
    return np.ptp(x.reshape(-1, x.shape[-1]), axis=0) < np.finfo(np.float64).resolution


def _out(values: np.ndarray, x: np.ndarray, squeeze: bool) -> torch.Tensor:
    """Float64 tensor ``[]`` or ``[dim]``; NaN for coordinates whose raw draws are constant."""
    t = torch.as_tensor(np.where(_constant(x), np.nan, values).astype(np.float64))
    return t[0] if squeeze else t


def _split(x: np.ndarray) -> np.ndarray:
    """Split each chain into its first and last halves: ``[2 * chains, draws // 2, dim]``."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank-normalize jointly over all chains with Blom's offset: Phi^-1((r - 3/8) / (S + 1/4))."""
    flat = x.reshape(-1, x.shape[-1])
    ranks = stats.rankdata(flat, method="average", axis=0)
    return special.ndtri((ranks - 0.375) / (flat.shape[0] + 0.25)).reshape(x.shape)


def _autocov(x: np.ndarray) -> np.ndarray:
    """Biased (divide-by-n) per-chain autocovariance along axis 1 via zero-padded FFT."""
    n = x.shape[1]
    centered = x - x.mean(axis=1, keepdims=True)
    size = fft.next_fast_len(2 * n)  # >= 2n - 1 avoids circular wrap-around
    spec = np.fft.rfft(centered, n=size, axis=1)
    return np.fft.irfft(spec * spec.conj(), n=size, axis=1)[:, :n] / n


def _ess_raw(x: np.ndarray) -> np.ndarray:
    """Multi-chain ESS with Geyer's initial monotone sequence (Vehtari et al. 2021, Sec. 3.2)."""
    m, n, dim = x.shape
    acov = _autocov(x).mean(axis=0)  # [n, dim], averaged over chains
    mean_var = acov[0] * n / (n - 1.0)  # W: mean within-chain variance
    var_plus = mean_var * (n - 1.0) / n  # = (n - 1) / n * W + B / n, with B added next
    if m > 1:
        var_plus = var_plus + np.var(x.mean(axis=1), axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var - acov) / var_plus  # combined autocorrelation, [n, dim]
    rho[0] = 1.0
    n_pairs = max((n - 3) // 2 + 1, 1)  # lag pairs (2k, 2k + 1) the truncation may inspect
    pairs = rho[: 2 * n_pairs].reshape(n_pairs, 2, dim)
    pair_sum = pairs.sum(axis=1)
    # Truncate before the first non-positive pair sum (Geyer's initial positive sequence).
    nonpos = pair_sum <= 0
    k = np.where(nonpos.any(axis=0), nonpos.argmax(axis=0), n_pairs - 1)
    # Initial monotone sequence: pair sums made non-increasing by a running minimum.
    monotone = np.minimum.accumulate(pair_sum, axis=0)
    kept = np.arange(n_pairs)[:, None] < k[None, :]
    # The even lag of the truncating pair is added too, and only if positive when that pair
    # sum is negative (as in ArviZ and Stan; it improves estimates for antithetic chains).
    even = np.take_along_axis(pairs[:, 0], k[None, :], axis=0)[0]
    last_sum = np.take_along_axis(pair_sum, k[None, :], axis=0)[0]
    extra = np.where(last_sum >= 0, even, np.maximum(even, 0.0))
    tau = -1.0 + 2.0 * np.where(kept, monotone, 0.0).sum(axis=0) + extra
    total = m * n
    tau = np.maximum(tau, 1.0 / np.log10(total))  # caps ESS at N log10(N)
    result = total / tau
    result[~np.isfinite(rho).all(axis=0)] = np.nan
    result[_constant(x)] = total  # e.g. an all-true quantile indicator, as in ArviZ
    return result


def _rhat_raw(x: np.ndarray) -> np.ndarray:
    """R-hat = sqrt(var_plus / W) of already-split chains (Vehtari et al. 2021, Sec. 3.1)."""
    n = x.shape[1]
    within = x.var(axis=1, ddof=1).mean(axis=0)
    between = n * x.mean(axis=1).var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _quantiles(x: np.ndarray, probs: tuple[float, ...]) -> np.ndarray:
    """Type-7 quantiles over all chains, ``[len(probs), dim]``, rounded exactly as ArviZ's."""
    srt = np.sort(x.reshape(-1, x.shape[-1]), axis=0)
    n, p = srt.shape[0], np.asarray(probs)
    aleph = n * p + (1.0 - p)  # 1-based fractional order statistic
    k = np.floor(np.clip(aleph, 1, n - 1)).astype(int)
    gamma = np.clip(aleph - k, 0.0, 1.0)[:, None]
    return (1.0 - gamma) * srt[k - 1] + gamma * srt[k]


def _ess_tail(x: np.ndarray) -> np.ndarray:
    """Tail ESS: min ESS of split indicators I(x <= q05), I(x <= q95) (Vehtari et al. 2021)."""
    q05, q95 = _quantiles(x, (0.05, 0.95))
    low, high = (_ess_raw(_split((x <= q).astype(np.float64))) for q in (q05, q95))
    return np.minimum(low, high)


def autocorrelation(samples: torch.Tensor | np.ndarray, max_lag: int | None = None) -> torch.Tensor:
    """Per-chain normalized autocorrelation rho_t via FFT (Vehtari et al. 2021, Sec. 3.2)."""
    x, squeeze = _as_array(samples)
    acov = _autocov(x)
    if max_lag is not None:
        if max_lag < 0:
            raise ValueError(f"max_lag must be >= 0; got {max_lag}.")
        acov = acov[:, : max_lag + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        acf = acov / acov[:, :1]
    t = torch.as_tensor(acf)
    return t[..., 0] if squeeze else t


def ess(samples: torch.Tensor | np.ndarray, method: str = "bulk") -> torch.Tensor:
    """Bulk/tail/mean split-chain ESS, Vehtari et al. 2021, Sec. 3.2 and 4 (as arviz.ess)."""
    x, squeeze = _as_array(samples)
    if method == "bulk":
        result = _ess_raw(_z_scale(_split(x)))
    elif method == "tail":
        result = _ess_tail(x)
    elif method == "mean":
        result = _ess_raw(_split(x))
    else:
        raise ValueError(f"method must be 'bulk', 'tail' or 'mean'; got {method!r}.")
    return _out(result, x, squeeze)


def rhat(samples: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Rank-normalized split R-hat, max of bulk and folded, Vehtari et al. 2021, Sec. 4."""
    x, squeeze = _as_array(samples)
    split = _split(x)
    bulk = _rhat_raw(_z_scale(split))
    folded = _rhat_raw(_z_scale(np.abs(split - np.median(split.reshape(-1, x.shape[-1]), 0))))
    return _out(np.maximum(bulk, folded), x, squeeze)  # NaN if either is NaN


def mcse(samples: torch.Tensor | np.ndarray, method: str = "mean") -> torch.Tensor:
    """Monte Carlo standard error of the mean or sd, Vehtari et al. 2021, Sec. 3.2 (arviz.mcse)."""
    x, squeeze = _as_array(samples)
    flat = x.reshape(-1, x.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "mean":
            result = flat.std(axis=0, ddof=1) / np.sqrt(_ess_raw(_split(x)))
        elif method == "sd":  # delta method on E[(x - mean)^2], as arviz.mcse(method="sd")
            sq = (x - flat.mean(axis=0)) ** 2
            evar = sq.reshape(flat.shape).mean(axis=0)
            varvar = ((sq**2).reshape(flat.shape).mean(axis=0) - evar**2) / _ess_raw(_split(sq))
            result = np.sqrt(varvar / evar / 4)
        else:
            raise ValueError(f"method must be 'mean' or 'sd'; got {method!r}.")
    return _out(result, x, squeeze)


@dataclass(frozen=True)
class Summary:
    """Per-coordinate posterior summary and convergence diagnostics (1-D float64 tensors)."""

    names: tuple[str, ...]
    mean: torch.Tensor
    sd: torch.Tensor
    q5: torch.Tensor
    q50: torch.Tensor
    q95: torch.Tensor
    mcse_mean: torch.Tensor
    ess_bulk: torch.Tensor
    ess_tail: torch.Tensor
    r_hat: torch.Tensor

    def to_dict(self) -> dict[str, list]:
        """Plain ``{column: list}`` dict (names plus one float list per statistic)."""
        return {"names": list(self.names)} | {c: getattr(self, c).tolist() for c in _COLUMNS}

    def __str__(self) -> str:
        """Aligned text table: one row per coordinate, one column per statistic."""
        rows = [["", *_COLUMNS]] + [
            [name, *(_fmt(c, getattr(self, c)[i].item()) for c in _COLUMNS)]
            for i, name in enumerate(self.names)
        ]
        widths = [max(map(len, col)) for col in zip(*rows, strict=True)]
        pad = [str.ljust] + [str.rjust] * len(_COLUMNS)
        return "\n".join(
            "  ".join(f(v, w) for f, v, w in zip(pad, r, widths, strict=True)) for r in rows
        )


def _fmt(column: str, value: float) -> str:
    return f"{value:.0f}" if column.startswith("ess") else f"{value:.3f}"


def summary(samples: torch.Tensor | np.ndarray, names: Sequence[str] | None = None) -> Summary:
    """Mean, sd, quantiles, MCSE, bulk/tail ESS and R-hat (Vehtari et al. 2021)."""
    x, _ = _as_array(samples)
    dim = x.shape[-1]
    names = tuple(names) if names is not None else tuple(f"x[{i}]" for i in range(dim))
    if len(names) != dim:
        raise ValueError(f"names must have one entry per coordinate ({dim}); got {len(names)}.")
    flat = torch.as_tensor(x.reshape(-1, dim))
    q = torch.as_tensor(_quantiles(x, (0.05, 0.5, 0.95)))
    return Summary(
        names=names,
        mean=flat.mean(dim=0),
        sd=flat.std(dim=0),
        q5=q[0],
        q50=q[1],
        q95=q[2],
        mcse_mean=mcse(x, "mean"),
        ess_bulk=ess(x, "bulk"),
        ess_tail=ess(x, "tail"),
        r_hat=rhat(x),
    )


# The usual thresholds (Vehtari et al. 2021, Sec. 4; Stan's and ArviZ's warnings).
RHAT_MAX, ESS_MIN, BFMI_MIN = 1.01, 400.0, 0.3


def bfmi(energy: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Energy Bayesian fraction of missing information per chain (Betancourt 2016,
    arXiv:1604.00695, eq. 5; Stan's E-BFMI, ``arviz.bfmi``):
    ``sum_n (E_n - E_{n-1})^2 / sum_n (E_n - mean E)^2`` over each chain's Hamiltonian values
    ``energy`` ``[chains, draws]``. Below 0.3 the momentum resampling cannot move the chain
    through the energy levels fast enough: the sampler explores the tails poorly."""
    e = (energy.detach().cpu().double().numpy() if isinstance(energy, torch.Tensor) else
         np.asarray(energy, dtype=np.float64))  # fmt: skip
    if e.ndim != 2 or e.shape[1] < 3:
        raise ValueError(
            f"energy must be [chains, draws] with at least 3 draws; got shape {tuple(e.shape)}"
        )
    num = np.square(np.diff(e, axis=1)).sum(axis=1)
    den = np.square(e - e.mean(axis=1, keepdims=True)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return torch.as_tensor(num / den)


@dataclass(frozen=True)
class Check:
    """One line of a verdict: what was measured, the worst value, the rule, and the outcome."""

    name: str
    value: float
    rule: str
    passed: bool

    def __str__(self) -> str:
        return f"{self.name} {self.value:.4g} ({self.rule}): {'PASS' if self.passed else 'FAIL'}"


def verdict(
    samples: torch.Tensor | np.ndarray,
    divergences: int | None = None,
    energy: torch.Tensor | np.ndarray | None = None,
) -> list[Check]:
    """Whether the chains can be trusted, by the usual rules: max R-hat < 1.01, min bulk and
    tail ESS > 400 (Vehtari et al. 2021, Sec. 4), no divergent transitions and every chain's
    E-BFMI > 0.3 (Stan; the last two only for Hamiltonian kernels, when given)."""
    x, _ = _as_array(samples)
    checks = [
        Check("max R-hat", float(np.nanmax(rhat(x).numpy())), f"< {RHAT_MAX}", False),
        Check("min bulk ESS", float(np.nanmin(ess(x, "bulk").numpy())), f"> {ESS_MIN:g}", False),
        Check("min tail ESS", float(np.nanmin(ess(x, "tail").numpy())), f"> {ESS_MIN:g}", False),
    ]
    checks = [
        Check(c.name, c.value, c.rule, c.value < RHAT_MAX if i == 0 else c.value > ESS_MIN)
        for i, c in enumerate(checks)
    ]
    if divergences is not None:
        checks.append(Check("divergences", float(divergences), "= 0", divergences == 0))
    if energy is not None:
        low = float(np.nanmin(bfmi(energy).numpy()))
        checks.append(Check("min E-BFMI", low, f"> {BFMI_MIN}", low > BFMI_MIN))
    return checks
