"""Scores and smoothing: where a learned score is wrong, Gaussian smoothing two ways, and the
concentration of Gaussian noise on a sphere.

The exact answers come from ``scorelab.densities`` (a Gaussian mixture's smoothed density,
score and denoiser are closed forms), so each picture is checked against them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from scipy import special
from torch import Tensor

from scorelab import densities, diffusion, nets
from scorelab.demos._common import DemoResult, fmt, generator, new_figure, save_png

# ---------------------------------------------------------------------------------------------
# score-field


def field_mixture() -> densities.GaussianMixture:
    """The 2-D two-component mixture of the score-field demo (correlated components)."""
    return densities.GaussianMixture(
        [0.3, 0.7],
        [[-2.0, -1.0], [2.0, 1.0]],
        [[[0.4, 0.2], [0.2, 0.3]], [[0.5, -0.15], [-0.15, 0.3]]],
    )


def train_dsm(
    target: densities.Density, sigma: float, steps: int, gen: torch.Generator, batch: int = 256
) -> nets.Denoiser:
    """A small MLP score network trained by denoising score matching at one noise level
    (Vincent 2011): minimize ``E ||s(x + sigma n, sigma) + n / sigma||^2 / 2`` on exact draws."""
    model = nets.build("mlp", "score", dim=2, hidden=64, depth=2, emb_dim=32, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data = target.sample(steps * batch, generator=gen)
    for i in range(steps):
        loss = diffusion.dsm_loss(
            model, data[i * batch : (i + 1) * batch], sigma=sigma, generator=gen
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _quiver(ax, pts: np.ndarray, field: np.ndarray, color: str = "k") -> None:
    """Arrows ``field`` at ``pts``, lengths squashed by ``|v| / (1 + |v|)`` so that large scores
    far from the data stay readable (direction exact, length monotone in ``|v|``)."""
    norm = np.linalg.norm(field, axis=-1, keepdims=True)
    v = field / np.maximum(norm, 1e-12) * (norm / (1 + norm))
    ax.quiver(
        pts[:, 0], pts[:, 1], v[:, 0], v[:, 1], color=color, angles="xy", scale=14, width=0.004
    )


def score_field(out: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    """The score ``grad log p`` of a two-component mixture with its density contours; an MLP
    trained by single-sigma DSM at a small sigma is accurate where the data is and wrong where
    the density is low; the exact smoothed scores ``grad log p_sigma`` (``p_sigma = p * N(0,
    sigma^2 I)``) at growing sigma, and a model trained at a large sigma, show how noise fills
    those regions."""
    gm = field_mixture()
    gen = generator(seed)
    small, large = 0.1, 1.0
    steps = 300 if quick else 600
    model_small = train_dsm(gm, small, steps, gen)
    model_large = train_dsm(gm, large, steps, gen)

    lim, n = 6.0, 81
    g = torch.linspace(-lim, lim, n)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    pts = torch.stack([gx, gy], -1).reshape(-1, 2)
    xx, yy = gx.numpy(), gy.numpy()
    p = gm.log_prob(pts).exp()
    high = p > 0.1 * p.max()  # where the data is
    low = p < 1e-4 * p.max()  # where (almost) no training point falls
    with torch.no_grad():
        learned = {small: model_small.score(pts, small), large: model_large.score(pts, large)}
    exact = {s: gm.smoothed_score(pts, s) for s in (small, large)}
    err = {s: (learned[s] - exact[s]).norm(dim=-1) for s in (small, large)}
    rel = {s: err[s] / exact[s].norm(dim=-1).clamp_min(1e-12) for s in (small, large)}
    numbers = dict(
        sigma_small=small,
        sigma_large=large,
        train_steps=steps,
        err_high=err[small][high].mean().item(),
        err_low=err[small][low].mean().item(),
        rel_low_small=rel[small][low].mean().item(),
        rel_low_large=rel[large][low].mean().item(),
        err_low_large=err[large][low].mean().item(),
        high_points=int(high.sum()),
        low_points=int(low.sum()),
    )
    numbers["ratio"] = numbers["err_low"] / numbers["err_high"]

    zz = p.reshape(n, n).numpy()
    sub = torch.zeros(n, n, dtype=torch.bool)
    sub[::5, ::5] = True
    sub = sub.reshape(-1)
    sp = pts[sub].numpy()
    fig = new_figure(16, 8)
    ax = fig.subplots(2, 4)
    levels = np.quantile(zz[zz > 1e-4 * zz.max()], [0.1, 0.3, 0.5, 0.7, 0.9])
    for a in ax.ravel():
        a.set(aspect="equal", xlim=(-lim, lim), ylim=(-lim, lim))
    ax[0, 0].contour(xx, yy, zz, levels=levels, colors="0.4", linewidths=0.7)
    _quiver(ax[0, 0], sp, exact[small][sub].numpy(), "k")
    ax[0, 0].set_title(f"exact score of p (σ = {small} smoothing)")
    ax[0, 1].contour(xx, yy, zz, levels=levels, colors="0.4", linewidths=0.7)
    _quiver(ax[0, 1], sp, learned[small][sub].numpy(), "C3")
    ax[0, 1].set_title(f"learned by DSM at σ = {small} ({steps} steps)")
    for a, s, title in (
        (ax[0, 2], small, "error, model at σ = 0.1"),
        (ax[0, 3], large, "error, model at σ = 1 (vs exact σ = 1)"),
    ):
        im = a.pcolormesh(
            xx,
            yy,
            err[s].reshape(n, n).log10().numpy(),
            cmap="magma",
            vmin=-2,
            vmax=1.5,
            shading="auto",
        )
        a.contour(xx, yy, zz, levels=levels, colors="w", linewidths=0.6)
        a.set_title(f"log10 |s_θ - s|: {title}", fontsize=9)
    fig.colorbar(im, ax=ax[0, 3], shrink=0.8)
    for a, s in zip(ax[1], (0.1, 0.5, 1.0, 2.0), strict=True):
        ps = gm.smoothed(s).log_prob(pts).exp().reshape(n, n).numpy()
        rel_density = np.log10(np.maximum(ps / ps.max(), 1e-12))
        a.contourf(xx, yy, rel_density, levels=[-12, -8, -6, -4, -3, -2, -1, 0], cmap="Blues")
        _quiver(a, sp, gm.smoothed_score(pts[sub], s).numpy())
        a.set_title(f"exact smoothed score, σ = {s}", fontsize=10)
    fig.suptitle(
        f"Score of a mixture: DSM at σ = {small} is {numbers['ratio']:.0f}x less accurate where "
        "the density is low. Bottom: p_σ = p * N(0, σ²) shaded by decades of p_σ / max p_σ; "
        "noise spreads the data over the plane"
    )
    paths = [save_png(fig, out / "score-field.png")]
    claim = (
        f"An MLP trained by DSM at sigma = {small} has mean score error {fmt(numbers['err_high'])} "
        f"where the density is high and {fmt(numbers['err_low'])} where it is below 1e-4 of its "
        f"peak ({numbers['ratio']:.1f}x larger; relative error {numbers['rel_low_small']:.2f}); "
        f"trained at sigma = {large}, the relative error there is "
        f"{numbers['rel_low_large']:.2f}, because noisy training points reach the whole plane."
    )
    table = (
        ["model", "mean error, high density", "mean error, low density", "relative, low"],
        [
            [
                f"DSM at sigma = {small}",
                numbers["err_high"],
                numbers["err_low"],
                numbers["rel_low_small"],
            ],
            [
                f"DSM at sigma = {large}",
                err[large][high].mean().item(),
                numbers["err_low_large"],
                numbers["rel_low_large"],
            ],
        ],
    )
    return DemoResult("score-field", claim, numbers, paths, table)


# ---------------------------------------------------------------------------------------------
# smoothing


def smoothing_mixture() -> densities.GaussianMixture:
    """The 1-D three-component mixture of the smoothing demo."""
    return densities.GaussianMixture([0.3, 0.5, 0.2], [[-3.0], [0.5], [3.5]], [0.25, 0.6, 0.1])


def smooth_by_convolution(p: np.ndarray, dx: float, sigma: float) -> np.ndarray:
    """``p_sigma(x) = int p(y) N(x - y; 0, sigma^2) dy`` as a direct Riemann sum on the grid
    (``np.convolve`` with the sampled Gaussian kernel, odd length, centred)."""
    half = math.ceil(10 * sigma / dx)
    k = np.arange(-half, half + 1) * dx
    kernel = np.exp(-(k**2) / (2 * sigma**2)) / math.sqrt(2 * math.pi * sigma**2)
    return np.convolve(p, kernel, mode="same") * dx


def smooth_by_fourier(
    p: np.ndarray, dx: float, sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``p_sigma = F^-1[phi(w) exp(-sigma^2 w^2 / 2)]``: the characteristic function of
    ``X + sigma N`` is ``phi_X(w) phi_N(w)`` with ``phi_N(w) = exp(-sigma^2 w^2 / 2)`` (FFT on
    the grid). Returns ``(p_sigma, w, phi)``."""
    w = 2 * math.pi * np.fft.fftfreq(len(p), d=dx)
    phi = np.fft.fft(p)
    out = np.fft.ifft(phi * np.exp(-(sigma**2) * w**2 / 2)).real
    return out, w, phi


def smoothing(out: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    """Gaussian smoothing of a 1-D mixture two ways, convolution with ``N(0, sigma^2)`` and
    damping of its characteristic function by ``exp(-sigma^2 w^2 / 2)``, both checked against
    the exact smoothed mixture ``sum_k w_k N(mu_k, v_k + sigma^2)``."""
    gm = smoothing_mixture()
    n = 4096 if quick else 8192
    half = 24.0
    x = np.linspace(-half, half, n, endpoint=False)
    dx = x[1] - x[0]
    xt = torch.from_numpy(x)[:, None]
    p = gm.log_prob(xt).exp().numpy()
    sigmas = [0.25, 0.5, 1.0, 2.0]
    rows, curves = [], {}
    for s in sigmas:
        conv = smooth_by_convolution(p, dx, s)
        four, w, phi = smooth_by_fourier(p, dx, s)
        exact = gm.smoothed(s).log_prob(xt).exp().numpy()
        curves[s] = (conv, four, exact)
        rows.append(
            dict(
                sigma=s,
                conv_vs_fourier=float(np.abs(conv - four).max()),
                conv_vs_exact=float(np.abs(conv - exact).max()),
                fourier_vs_exact=float(np.abs(four - exact).max()),
                peak=float(exact.max()),
            )
        )
    # the grid's characteristic function against the closed form sum_k w_k e^{i mu w - v w^2/2}
    shift = np.exp(-1j * w * x[0]) * dx  # FFT's phase for a grid starting at x[0]
    weights, mus, vs = gm.weights.numpy(), gm.component_means[:, 0].numpy(), [0.25, 0.6, 0.1]
    cf_exact = sum(
        wk * np.exp(-1j * mk * w - vk * w**2 / 2)
        for wk, mk, vk in zip(weights, mus, vs, strict=True)
    )
    cf_err = float(np.abs(phi * shift - cf_exact).max())

    fig = new_figure(16, 4.3)
    ax = fig.subplots(1, 3)
    view = np.abs(x) < 8
    ax[0].plot(x[view], p[view], "k", lw=2, label="p")
    for i, s in enumerate(sigmas):
        conv, four, exact = curves[s]
        ax[0].plot(x[view], conv[view], color=f"C{i}", label=f"σ = {s}: convolution")
        ax[0].plot(
            x[view][::60], four[view][::60], "o", ms=3, color=f"C{i}", label=f"σ = {s}: Fourier"
        )
    ax[0].set(title="p_σ = p * N(0, σ²): two ways", xlabel="x")
    ax[0].legend(frameon=False, fontsize=7)
    order = np.argsort(w)
    wv = w[order]
    keep = np.abs(wv) < 8
    cf = np.abs(phi * shift)[order]
    ax[1].plot(wv[keep], cf[keep], "k", lw=2, label="|φ(ω)|")
    for i, s in enumerate(sigmas):
        ax[1].plot(
            wv[keep],
            (cf * np.exp(-(s**2) * wv**2 / 2))[keep],
            color=f"C{i}",
            label=f"|φ(ω)| exp(-σ²ω²/2), σ = {s}",
        )
    ax[1].set(title="characteristic function, damped", xlabel="ω")
    ax[1].legend(frameon=False, fontsize=7)
    ax[2].semilogy(sigmas, [r["conv_vs_fourier"] for r in rows], "o-", label="convolution vs FFT")
    ax[2].semilogy(sigmas, [r["conv_vs_exact"] for r in rows], "s-", label="convolution vs exact")
    ax[2].semilogy(sigmas, [r["fourier_vs_exact"] for r in rows], "^-", label="FFT vs exact")
    ax[2].set(title="max |difference| (peak density ~0.3)", xlabel="σ")
    ax[2].legend(frameon=False)
    paths = [save_png(fig, out / "smoothing.png")]
    worst = max(max(r["conv_vs_fourier"], r["conv_vs_exact"], r["fourier_vs_exact"]) for r in rows)
    claim = (
        f"Smoothing a 3-component mixture by convolution and by damping its characteristic "
        f"function with exp(-sigma^2 w^2/2) gives the same density to {worst:.1e} (max "
        f"absolute difference over sigma in {sigmas}, peak density "
        f"{max(r['peak'] for r in rows):.2f}), and both equal the exact smoothed mixture."
    )
    table = (
        ["sigma", "conv vs Fourier", "conv vs exact", "Fourier vs exact"],
        [
            [r["sigma"], r["conv_vs_fourier"], r["conv_vs_exact"], r["fourier_vs_exact"]]
            for r in rows
        ],
    )
    numbers = dict(rows=rows, grid_points=n, dx=dx, cf_error=cf_err, worst=worst)
    return DemoResult("smoothing", claim, numbers, paths, table)


# ---------------------------------------------------------------------------------------------
# concentration


def chi_mean(d: int) -> float:
    """``E|x|`` for ``x ~ N(0, I_d)``: ``sqrt(2) Gamma((d+1)/2) / Gamma(d/2)`` (the chi law)."""
    return math.sqrt(2) * math.exp(special.gammaln((d + 1) / 2) - special.gammaln(d / 2))


def chi_relative_sd(d: int) -> float:
    """``sd|x| / E|x|`` for ``x ~ N(0, I_d)``: ``sqrt(d - m^2) / m`` with ``m = chi_mean(d)``;
    it tends to ``1 / sqrt(2d)``."""
    m = chi_mean(d)
    return math.sqrt(d - m * m) / m


def _norms(d: int, sigma: float, n: int, gen: torch.Generator, chunk: int = 250) -> Tensor:
    """Norms of ``n`` exact draws of ``N(0, sigma^2 I_d)`` (drawn in chunks to bound memory)."""
    g = densities.Gaussian(torch.zeros(d), sigma**2)
    out = [g.sample(min(chunk, n - i), generator=gen).norm(dim=-1) for i in range(0, n, chunk)]
    return torch.cat(out)


def concentration(out: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    """``x ~ N(0, sigma^2 I_d)`` concentrates near the sphere of radius ``sigma sqrt(d)``:
    ``|x| / sigma`` follows the chi law, whose relative spread ``sd / mean`` tends to
    ``1 / sqrt(2d)``."""
    gen = generator(seed)
    sigma = 2.0
    dims = [2, 10, 100, 1000, 10_000]
    n = 1000 if quick else 2000
    rows, scaled = [], {}
    for d in dims:
        r = _norms(d, sigma, n, gen).double()
        u = (r / (sigma * math.sqrt(d))).numpy()
        scaled[d] = u
        rows.append(
            dict(
                d=d,
                n=n,
                mean=float(u.mean()),
                rel_sd=float(u.std(ddof=1) / u.mean()),
                rel_sd_exact=chi_relative_sd(d),
                rel_sd_asymptotic=1 / math.sqrt(2 * d),
                mean_exact=chi_mean(d) / math.sqrt(d),
                within_10pct=float((np.abs(u - 1) < 0.1).mean()),
            )
        )

    fig = new_figure(14, 4.3)
    ax = fig.subplots(1, 2)
    for i, d in enumerate(dims):
        ax[0].hist(
            scaled[d],
            bins=80,
            range=(0, 2.5),
            density=True,
            histtype="stepfilled",
            alpha=0.45,
            color=f"C{i}",
            label=f"d = {d}",
        )
    ax[0].set(
        xlabel="|x| / (σ √d)",
        ylabel="density",
        yscale="log",
        ylim=(1e-2, 100),
        title=f"norms of {n} draws of N(0, σ² I_d), σ = {sigma}",
    )
    ax[0].legend(frameon=False)
    ds = np.array(dims, dtype=float)
    fine = np.logspace(0.3, 4, 60)
    ax[1].loglog(fine, 1 / np.sqrt(2 * fine), "k--", label="1 / √(2d)")
    ax[1].loglog(
        fine, [chi_relative_sd(round(d)) for d in fine], "k-", lw=0.8, label="exact (chi law)"
    )
    ax[1].loglog(ds, [r["rel_sd"] for r in rows], "o", label="measured sd / mean")
    ax[1].set(
        xlabel="dimension d",
        ylabel="relative spread of |x|",
        title="the shell gets thinner like 1/√(2d)",
    )
    ax[1].legend(frameon=False)
    paths = [save_png(fig, out / "concentration.png")]
    last = rows[-1]
    claim = (
        f"The norm of N(0, sigma^2 I_d) has relative spread {rows[0]['rel_sd']:.3f} at d = 2 "
        f"and {last['rel_sd']:.5f} at d = {last['d']} (1/sqrt(2d) = "
        f"{last['rel_sd_asymptotic']:.5f}); at d = {last['d']}, "
        f"{100 * last['within_10pct']:.0f}% of draws lie within 10% of radius sigma sqrt(d)."
    )
    table = (
        [
            "d",
            "mean |x| / (sigma sqrt d)",
            "relative sd",
            "exact (chi)",
            "1/sqrt(2d)",
            "within 10%",
        ],
        [
            [
                r["d"],
                r["mean"],
                r["rel_sd"],
                r["rel_sd_exact"],
                r["rel_sd_asymptotic"],
                r["within_10pct"],
            ]
            for r in rows
        ],
    )
    return DemoResult("concentration", claim, dict(rows=rows, sigma=sigma), paths, table)
