"""MCMC demonstrations: tuning Langevin in 1-D, conditioning in 2-D, Brownian motion against
Langevin, Metropolis on Gibbs densities, and stochastic-gradient Langevin on a posterior.

Every demo samples with ``scorelab.mcmc`` (kernels ``ula``, ``random_walk``, ``rwm``, ``mala``,
``sgld``) and measures what it shows against a closed form where one exists.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from scorelab import densities, mcmc
from scorelab.demos._common import (
    DemoResult,
    bare,
    fmt,
    generator,
    new_figure,
    save_gif,
    save_png,
)
from scorelab.errors import DivergenceError

# ---------------------------------------------------------------------------------------------
# langevin-1d


def ula_stationary_variance(h: float, s: float) -> float:
    """Stationary variance of ULA ``x' = x + h score(x) + sqrt(2h) xi`` on ``N(0, s^2)``.

    The chain is the AR(1) recursion ``x' = (1 - h/s^2) x + sqrt(2h) xi``, so
    ``v = 2h / (1 - (1 - h/s^2)^2) = s^2 / (1 - h/(2 s^2))``, finite for ``0 < h < 2 s^2``;
    for ``h >= 2 s^2`` the factor ``|1 - h/s^2| >= 1`` and the chain diverges.
    """
    if not 0 < h < 2 * s**2:
        return math.inf
    return s**2 / (1 - h / (2 * s**2))


def ula_ess_per_draw(h: float, s: float) -> float:
    """ESS per draw of ULA on ``N(0, s^2)``: ``(1 - rho) / (1 + rho)`` with the lag-1
    autocorrelation ``rho = 1 - h/s^2`` of the AR(1) chain (above 1 when ``rho < 0``)."""
    rho = 1 - h / s**2
    return (1 - rho) / (1 + rho)


def langevin_1d(out: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    """Unadjusted Langevin on ``N(0, s^2)`` at several step sizes ``h``: the variance bias
    ``s^2 / (1 - h/(2 s^2))``, the ESS per draw ``(h/s^2) / (2 - h/s^2)``, and divergence at
    ``h >= 2 s^2`` (growth factor ``|1 - h/s^2|`` per step)."""
    s = 1.0
    steps_sizes = [0.05, 0.2, 0.5, 1.0, 1.5]
    h_div = 2.5
    # many chains cost little (a step's cost hardly depends on their number); the ESS estimator
    # needs each chain much longer than the autocorrelation time 2/h - 1 (39 at h = 0.05)
    chains, steps, warmup = (256, 2000, 300) if quick else (512, 4000, 300)
    target = densities.Gaussian([0.0], s**2)
    gen = generator(seed)
    start = torch.full((chains, 1), 4.0 * s)
    rows, runs = [], {}
    for h in steps_sizes:
        res = mcmc.sample(
            target,
            "ula",
            chains=chains,
            steps=warmup + steps,
            warmup=0,
            step_size=h,
            init=start,
            generator=gen,
            progress=False,
        )
        trace = res.samples[:4, :300, 0].numpy()  # the start, from x = 4s
        x = res.samples[:, warmup:].double()  # burn-in dropped
        n = x.shape[0] * x.shape[1]
        var = (x**2).mean().item()  # the mean is 0 exactly, so E x^2 is the variance
        var_se = mcmc.mcse(x**2).item()
        ess = mcmc.ess(x, method="mean").item()
        runs[h] = (trace, x[:, :, 0].numpy())
        rows.append(
            dict(
                h=h,
                var=var,
                var_se=var_se,
                var_theory=ula_stationary_variance(h, s),
                ess_per_draw=ess / n,
                ess_theory=ula_ess_per_draw(h, s),
                draws=n,
                chains=chains,
                steps=steps,
            )
        )

    # divergence: the runner raises; a short trajectory shows the geometric growth
    diverged_at = None
    try:
        mcmc.sample(
            target,
            "ula",
            chains=8,
            steps=2000,
            warmup=0,
            step_size=h_div,
            init=start[:8],
            generator=gen,
            progress=False,
        )
    except DivergenceError as err:
        diverged_at = str(err)
    state = mcmc.init(target, start[:8].double())
    path = [state.x.abs().mean().item()]
    for _ in range(60):
        state, _ = mcmc.ula_step(target, state, h_div, gen)
        path.append(state.x.abs().mean().item())
    logs = np.log(np.asarray(path))
    growth = float(np.exp(np.polyfit(np.arange(20, 61), logs[20:], 1)[0]))

    # pictures
    fig = new_figure(15, 6)
    axes = fig.subplots(2, len(steps_sizes))
    grid = np.linspace(-5 * s, 5 * s, 400)
    for j, (h, row) in enumerate(zip(steps_sizes, rows, strict=True)):
        trace, draws = runs[h]
        axes[0, j].plot(trace.T, lw=0.7)
        axes[0, j].axhline(0, color="k", lw=0.5)
        axes[0, j].set_title(f"h = {h}: ESS/draw {row['ess_per_draw']:.3f}")
        axes[0, j].set_xlabel("iteration (from x = 4s)")
        axes[1, j].hist(draws.ravel(), bins=80, range=(-5 * s, 5 * s), density=True, alpha=0.5)
        axes[1, j].plot(
            grid,
            np.exp(-(grid**2) / (2 * s**2)) / math.sqrt(2 * math.pi * s**2),
            "k",
            label="target N(0, s^2)",
        )
        v = row["var_theory"]
        axes[1, j].plot(
            grid,
            np.exp(-(grid**2) / (2 * v)) / math.sqrt(2 * math.pi * v),
            "r--",
            label="ULA: N(0, s^2/(1-h/2s^2))",
        )
        axes[1, j].set_title(f"variance {row['var']:.3f} (theory {v:.3f})")
    axes[1, 0].legend(frameon=False, fontsize=7)
    fig.suptitle("Unadjusted Langevin on N(0, 1): traces from x = 4 and histograms of the draws")
    paths = [save_png(fig, out / "langevin-1d-chains.png")]

    fig = new_figure(15, 4.2)
    ax = fig.subplots(1, 3)
    hs = np.array(steps_sizes)
    fine = np.linspace(0.005, 1.95, 300) * s**2
    ax[0].loglog(fine, [ula_ess_per_draw(h, s) for h in fine], "k", label="theory (h/s²)/(2-h/s²)")
    ax[0].loglog(hs, [r["ess_per_draw"] for r in rows], "o", label="measured")
    ax[0].set(xlabel="step size h", ylabel="ESS per draw", title="small steps mix slowly")
    ax[0].legend(frameon=False)
    ax[1].plot(fine, [ula_stationary_variance(h, s) for h in fine], "k", label="s²/(1-h/(2s²))")
    ax[1].errorbar(
        hs,
        [r["var"] for r in rows],
        yerr=[2 * r["var_se"] for r in rows],
        fmt="o",
        label="measured ± 2 MCSE",
    )
    ax[1].axhline(s**2, color="0.5", ls=":", label="target variance s²")
    ax[1].axvline(2 * s**2, color="r", ls="--", label="h = 2s²: diverges")
    ax[1].set(
        xlabel="step size h",
        ylabel="variance of the draws",
        ylim=(0, 8),
        title="large steps are biased",
    )
    ax[1].legend(frameon=False, fontsize=8)
    ax[2].semilogy(path, label=f"h = {h_div}: mean |x_t|")
    ax[2].semilogy(
        np.arange(61),
        path[20] * abs(1 - h_div / s**2) ** (np.arange(61) - 20),
        "k--",
        label=f"|1 - h/s²|^t = {abs(1 - h_div / s**2):.1f}^t",
    )
    ax[2].set(xlabel="iteration", title="and beyond 2s² they diverge")
    ax[2].legend(frameon=False)
    paths.append(save_png(fig, out / "langevin-1d-tradeoff.png"))

    table = (
        ["h", "variance", "MCSE", "theory", "ESS/draw", "theory"],
        [
            [r["h"], r["var"], r["var_se"], r["var_theory"], r["ess_per_draw"], r["ess_theory"]]
            for r in rows
        ],
    )
    best, worst = rows[0], rows[-1]
    claim = (
        f"ULA on N(0, 1) with x' = x + h score + sqrt(2h) N: ESS per draw grows from "
        f"{fmt(best['ess_per_draw'])} at h = {best['h']} to {fmt(worst['ess_per_draw'])} at "
        f"h = {worst['h']}, while the variance of the draws grows to {fmt(worst['var'])} "
        f"(theory s^2/(1 - h/(2 s^2)) = {fmt(worst['var_theory'])}); at h = {h_div} >= 2 s^2 "
        f"|x| grows by {growth:.3f} per step (theory {abs(1 - h_div / s**2)}) and the chain "
        "diverges."
    )
    numbers = dict(
        s=s,
        rows=rows,
        h_divergent=h_div,
        growth=growth,
        growth_theory=abs(1 - h_div / s**2),
        divergence_error=diverged_at,
    )
    return DemoResult("langevin-1d", claim, numbers, paths, table)


# ---------------------------------------------------------------------------------------------
# langevin-2d


def _rotated_gaussian(kappa: float) -> tuple[densities.Gaussian, Tensor]:
    """``N(0, R diag(1, 1/kappa) R^T)`` with ``R`` the 45-degree rotation; returns it and the
    slow (unit-variance) eigenvector."""
    slow = torch.tensor([1.0, 1.0], dtype=torch.float64) / math.sqrt(2)
    fast = torch.tensor([1.0, -1.0], dtype=torch.float64) / math.sqrt(2)
    cov = torch.outer(slow, slow) + torch.outer(fast, fast) / kappa
    return densities.Gaussian(torch.zeros(2), cov), slow


def ula_iat_slow(kappa: float, c: float) -> float:
    """Integrated autocorrelation time of ULA along the slow direction of a Gaussian with
    condition number ``kappa = (sigma_max / sigma_min)^2`` at step ``h = c sigma_min^2``
    (``sigma_max = 1``): ``rho = 1 - c/kappa``, ``tau = (1 + rho) / (1 - rho) = 2 kappa/c - 1``."""
    return 2 * kappa / c - 1


def langevin_2d(out: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    """ULA on 2-D Gaussians of growing condition number ``kappa``, with the step fixed by the
    stiff direction (``h = sigma_min^2 / 2``, stable for any kappa): the slow direction's
    integrated autocorrelation time grows like ``tau = 4 kappa - 1``."""
    kappas = [1.0, 2.0, 4.0, 8.0, 16.0]
    c = 0.5  # h = c * sigma_min^2
    # The ESS estimator needs chains much longer than tau (its finite-chain bias is of order
    # tau / steps), so each run gets ``per_tau`` autocorrelation times; the cost of a step
    # hardly depends on the number of chains, so there are many.
    chains, per_tau = (512, 60) if quick else (512, 120)
    gen = generator(seed)
    rows, draws_for_plot, traces = [], {}, {}
    for kappa in kappas:
        target, slow = _rotated_gaussian(kappa)
        h = c / kappa
        steps = max(1000, int(per_tau * ula_iat_slow(kappa, c)))
        init = target.sample(chains, generator=gen)
        res = mcmc.sample(
            target,
            "ula",
            chains=chains,
            steps=steps,
            warmup=200,
            step_size=h,
            init=init,
            generator=gen,
            progress=False,
        )
        x = res.samples.double()
        proj = x @ slow  # [chains, draws]: the slow coordinate
        n = proj.numel()
        ess = mcmc.ess(proj, method="mean").item()
        rows.append(
            dict(
                kappa=kappa,
                h=h,
                iat=n / ess,
                iat_theory=ula_iat_slow(kappa, c),
                ess=ess,
                draws=n,
                chains=chains,
                steps=steps,
            )
        )
        draws_for_plot[kappa] = x[:, ::10].reshape(-1, 2).numpy()
        traces[kappa] = x[0, :100].numpy()

    # an animation: clouds of chains started at one point relax, fast for kappa = 1, slowly
    # along the long axis for the largest kappa
    clouds = {}
    for kappa in (kappas[0], kappas[-1]):
        target, _ = _rotated_gaussian(kappa)
        res = mcmc.sample(
            target,
            "ula",
            chains=300,
            steps=240,
            warmup=0,
            step_size=c / kappa,
            init=torch.tensor([3.0, 0.0]),
            generator=gen,
            progress=False,
        )
        clouds[kappa] = res.samples.numpy()

    fig = new_figure(16, 4.2)
    ax = fig.subplots(1, len(kappas) + 1)
    for j, kappa in enumerate(kappas):
        target, _ = _rotated_gaussian(kappa)
        g = np.linspace(-3.5, 3.5, 120)
        xx, yy = np.meshgrid(g, g)
        pts = torch.from_numpy(np.stack([xx, yy], -1).reshape(-1, 2))
        z = target.log_prob(pts).exp().reshape(120, 120).numpy()
        ax[j].contour(xx, yy, z, levels=6, colors="k", linewidths=0.6)
        d = draws_for_plot[kappa]
        ax[j].scatter(d[:3000, 0], d[:3000, 1], s=1, alpha=0.3)
        ax[j].plot(
            traces[kappa][:, 0],
            traces[kappa][:, 1],
            "r.-",
            lw=0.7,
            ms=2,
            label="100 steps of one chain",
        )
        ax[j].set(
            aspect="equal",
            xlim=(-3.5, 3.5),
            ylim=(-3.5, 3.5),
            title=f"κ = {kappa:g}: τ = {rows[j]['iat']:.1f}",
        )
    ax[0].legend(frameon=False, loc="lower right")
    ks = np.array(kappas)
    ax[-1].loglog(ks, [ula_iat_slow(k, c) for k in ks], "k-", label="theory 4κ - 1")
    ax[-1].loglog(ks, [r["iat"] for r in rows], "o", label="measured N / ESS")
    ax[-1].set(
        xlabel="condition number κ", ylabel="autocorrelation time τ", title="mixing slows like κ"
    )
    ax[-1].legend(frameon=False)
    paths = [save_png(fig, out / "langevin-2d.png")]

    fig = new_figure(8, 4)
    axs = fig.subplots(1, 2)
    k_lo, k_hi = kappas[0], kappas[-1]
    g = np.linspace(-3.5, 3.5, 100)
    xx, yy = np.meshgrid(g, g)
    pts = torch.from_numpy(np.stack([xx, yy], -1).reshape(-1, 2))
    frames = list(range(0, 240, 8))
    dots = []
    for a, k in zip(axs, (k_lo, k_hi), strict=True):
        z = _rotated_gaussian(k)[0].log_prob(pts).exp().reshape(100, 100).numpy()
        a.contour(xx, yy, z, levels=6, colors="k", linewidths=0.6)
        dots.append(a.scatter(clouds[k][:, 0, 0], clouds[k][:, 0, 1], s=3, alpha=0.5))
        a.set(aspect="equal", xlim=(-3.5, 3.5), ylim=(-3.5, 3.5))
        bare(a)

    def update(i: int) -> None:
        t = frames[i]
        for a, k, d in zip(axs, (k_lo, k_hi), dots, strict=True):
            d.set_offsets(clouds[k][:, t])
            a.set_title(f"ULA, κ = {k:g}: step {t}")

    paths.append(save_gif(fig, update, len(frames), out / "langevin-2d.gif", quick=quick))
    table = (
        ["kappa", "step h", "tau measured", "tau theory 4 kappa - 1", "ESS"],
        [[r["kappa"], r["h"], r["iat"], r["iat_theory"], r["ess"]] for r in rows],
    )
    claim = (
        f"With the step set by the stiff direction (h = sigma_min^2 / 2), the autocorrelation "
        f"time along the slow direction grows from {fmt(rows[0]['iat'])} at kappa = 1 to "
        f"{fmt(rows[-1]['iat'])} at kappa = {kappas[-1]:g} (theory 4 kappa - 1 = "
        f"{fmt(rows[-1]['iat_theory'])}): mixing slows in proportion to the condition number."
    )
    return DemoResult("langevin-2d", claim, dict(rows=rows, c=c), paths, table)


# ---------------------------------------------------------------------------------------------
# random-walk


def random_walk(out: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    """Brownian motion ``x' = x + sqrt(2h) xi`` against Langevin ``x' = x + h score + sqrt(2h) xi``
    on ``N(0, 1)``, both from 0: the walk's variance is ``2 h t`` (spread ``sqrt(2 h t)``), the
    Langevin chain's ``v (1 - (1 - h)^(2t))`` with ``v = 1 / (1 - h/2)``."""
    h = 0.05
    chains, steps = (1000, 300) if quick else (2000, 600)
    target = densities.Gaussian([0.0], 1.0)
    gen = generator(seed)
    zero = torch.zeros(chains, 1, dtype=torch.float64)
    kw = dict(chains=chains, steps=steps, warmup=0, step_size=h, init=zero,
              dtype=torch.float64, generator=gen, progress=False)  # fmt: skip
    # the same start, step and generator: only the score term differs
    walk, lang = (mcmc.sample(target, kernel, **kw) for kernel in ("random_walk", "ula"))
    w, lg = walk.samples[:, :, 0], lang.samples[:, :, 0]  # [chains, steps]; column t is x_{t+1}
    t = np.arange(1, steps + 1)
    v_inf = ula_stationary_variance(h, 1.0)
    checkpoints = [steps // 8, steps // 4, steps // 2, steps]
    rows = []
    for tc in checkpoints:
        rows.append(
            dict(
                t=tc,
                walk_var=(w[:, tc - 1] ** 2).mean().item(),
                walk_theory=2 * h * tc,
                langevin_var=(lg[:, tc - 1] ** 2).mean().item(),
                langevin_theory=v_inf * (1 - (1 - h) ** (2 * tc)),
            )
        )

    fig = new_figure(15, 4.2)
    ax = fig.subplots(1, 3)
    for a, x, name in ((ax[0], w, "Brownian motion (no score)"), (ax[0], lg, "Langevin")):
        a.plot(t, x[:25].T.numpy(), lw=0.5, color="C1" if name == "Langevin" else "C0", alpha=0.7)
    ax[0].plot([], [], color="C0", label="Brownian motion (no score)")
    ax[0].plot([], [], color="C1", label="Langevin")
    ax[0].set(xlabel="step t", title="25 chains each, from x = 0")
    ax[0].legend(frameon=False)
    ax[1].plot(t, (w**2).mean(0).numpy(), label="Brownian: measured variance")
    ax[1].plot(t, 2 * h * t, "k--", label="2 h t")
    ax[1].plot(t, (lg**2).mean(0).numpy(), label="Langevin: measured variance")
    ax[1].axhline(v_inf, color="k", ls=":", label="1 / (1 - h/2)")
    ax[1].set(xlabel="step t", ylabel="variance", title="spread grows like sqrt(t) without score")
    ax[1].legend(frameon=False, fontsize=8)
    grid = np.linspace(-8, 8, 400)
    for chains_x, name in ((w, "Brownian"), (lg, "Langevin")):
        ax[2].hist(chains_x[:, -1].numpy(), bins=60, range=(-8, 8), density=True, alpha=0.5,
                   label=f"{name} at t = {steps}")  # fmt: skip
    ax[2].plot(grid, np.exp(-(grid**2) / 2) / math.sqrt(2 * math.pi), "k", label="p = N(0, 1)")
    ax[2].legend(frameon=False, fontsize=8)
    ax[2].set_title("only Langevin settles on p")
    paths = [save_png(fig, out / "random-walk.png")]

    fig = new_figure(6, 4)
    a = fig.subplots()
    frames = list(range(0, steps, max(1, steps // 30)))
    edges = np.linspace(-8, 8, 61)

    def hist(x: Tensor) -> np.ndarray:
        return np.histogram(x.numpy(), bins=edges, density=True)[0]

    w_bars = a.stairs(hist(w[:, 0]), edges, fill=True, alpha=0.5, label="Brownian motion")
    l_bars = a.stairs(hist(lg[:, 0]), edges, fill=True, alpha=0.5, label="Langevin")
    a.plot(grid, np.exp(-(grid**2) / 2) / math.sqrt(2 * math.pi), "k", label="p = N(0, 1)")
    a.set(ylim=(0, 1.2), xlim=(-8, 8))
    a.legend(frameon=False, loc="upper right")
    bare(a)

    def update(i: int) -> None:
        k = frames[i]
        w_bars.set_data(hist(w[:, k]))
        l_bars.set_data(hist(lg[:, k]))
        a.set_title(f"step {k + 1} of {steps}, h = {h}")

    paths.append(save_gif(fig, update, len(frames), out / "random-walk.gif", quick=quick))
    last = rows[-1]
    claim = (
        f"After {steps} steps of size h = {h} from 0, Brownian motion has variance "
        f"{fmt(last['walk_var'])} (theory 2 h t = {fmt(last['walk_theory'])}, still growing) "
        f"while Langevin has settled at {fmt(last['langevin_var'])} (theory "
        f"{fmt(last['langevin_theory'])} = 1/(1 - h/2)): without the score the walk never "
        "settles on p."
    )
    table = (
        ["t", "Brownian variance", "2 h t", "Langevin variance", "theory"],
        [
            [r["t"], r["walk_var"], r["walk_theory"], r["langevin_var"], r["langevin_theory"]]
            for r in rows
        ],
    )
    return DemoResult("random-walk", claim, dict(h=h, chains=chains, rows=rows), paths, table)


# ---------------------------------------------------------------------------------------------
# metropolis


def metropolis(out: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    """Random-walk Metropolis on Gibbs densities ``p = exp(-u) / Z`` (Z never computed):
    the Laplace density ``exp(-sqrt(2)|x|) / sqrt(2)`` (variance 1, ``P(|x| > 2) =
    exp(-2 sqrt(2))``) and a double well ``u = 2 (x^2 - 1)^2``; acceptance against proposal
    scale."""
    gen = generator(seed)
    chains, steps = (32, 1500) if quick else (64, 3000)
    laplace_u = lambda x: math.sqrt(2) * x.abs().sum(-1)  # noqa: E731
    well_u = lambda x: 2 * ((x**2 - 1) ** 2).sum(-1)  # noqa: E731
    laplace = densities.from_log_prob(lambda x: -laplace_u(x), 1)
    well = densities.from_log_prob(lambda x: -well_u(x), 1)
    res = mcmc.sample(
        laplace,
        "rwm",
        chains=chains,
        steps=steps,
        warmup=500,
        generator=gen,
        dtype=torch.float64,
        progress=False,
    )
    x = res.samples
    tail = (x.abs() > 2).double()
    lap = dict(
        mean=x.mean().item(),
        mean_se=mcmc.mcse(x).item(),
        var=(x**2).mean().item(),
        var_se=mcmc.mcse(x**2).item(),
        tail=tail.mean().item(),
        tail_se=mcmc.mcse(tail).item(),
        tail_theory=math.exp(-2 * 2**0.5),
        ess=mcmc.ess(x).item(),
        accept=res.accept_rate.mean().item(),
        step=res.step_size,
    )
    wres = mcmc.sample(
        well,
        "rwm",
        chains=chains,
        steps=steps,
        warmup=500,
        generator=gen,
        dtype=torch.float64,
        progress=False,
    )
    grid = np.linspace(-2.5, 2.5, 2001)
    pw = np.exp(-2 * (grid**2 - 1) ** 2)
    pw /= np.trapezoid(pw, grid)
    x2_exact = float(np.trapezoid(grid**2 * pw, grid))
    wx = wres.samples
    dwell = dict(
        x2=(wx**2).mean().item(),
        x2_se=mcmc.mcse(wx**2).item(),
        x2_exact=x2_exact,
        accept=wres.accept_rate.mean().item(),
    )

    scales = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
    sweep = []
    for sc in scales:
        r = mcmc.sample(
            laplace,
            "rwm",
            chains=chains,
            steps=steps // 3,
            warmup=100,
            step_size=sc,
            generator=gen,
            dtype=torch.float64,
            progress=False,
        )
        n = r.samples.shape[0] * r.samples.shape[1]
        sweep.append(
            dict(
                scale=sc,
                accept=r.accept_rate.mean().item(),
                ess_per_draw=mcmc.ess(r.samples).item() / n,
            )
        )

    fig = new_figure(15, 4.2)
    ax = fig.subplots(1, 3)
    g = np.linspace(-6, 6, 600)
    ax[0].hist(
        x.reshape(-1).numpy(), bins=120, range=(-6, 6), density=True, alpha=0.5, label="RWM draws"
    )
    ax[0].plot(g, np.exp(-math.sqrt(2) * np.abs(g)) / math.sqrt(2), "k", label="exp(-√2|x|)/√2")
    ax[0].set_title(f"Laplace: acceptance {lap['accept']:.2f}, variance {lap['var']:.3f}")
    ax[0].legend(frameon=False)
    ax[1].hist(
        wx.reshape(-1).numpy(),
        bins=120,
        range=(-2.5, 2.5),
        density=True,
        alpha=0.5,
        label="RWM draws",
    )
    ax[1].plot(grid, pw, "k", label="exp(-2(x²-1)²)/Z")
    ax[1].set_title(f"double well: E x² = {dwell['x2']:.3f} (exact {x2_exact:.3f})")
    ax[1].legend(frameon=False)
    a2 = ax[2].twinx()
    ax[2].semilogx(scales, [r["accept"] for r in sweep], "o-", label="acceptance")
    a2.semilogx(scales, [r["ess_per_draw"] for r in sweep], "s-", color="C1", label="ESS/draw")
    ax[2].axhline(0.234, color="0.5", ls=":")
    ax[2].set(xlabel="proposal scale", ylabel="acceptance", title="Laplace: proposal scale")
    a2.set_ylabel("ESS per draw")
    ax[2].legend(loc="center left", frameon=False)
    a2.legend(loc="upper right", frameon=False)
    paths = [save_png(fig, out / "metropolis.png")]
    claim = (
        f"Random-walk Metropolis with only u(x) = sqrt(2)|x| (no normalizing constant), tuned "
        f"to acceptance {lap['accept']:.2f}, gives variance {lap['var']:.3f} ± {lap['var_se']:.3f} "
        f"(exact 1) and P(|x| > 2) = {lap['tail']:.4f} ± {lap['tail_se']:.4f} (exact "
        f"{lap['tail_theory']:.4f}); acceptance falls from {sweep[0]['accept']:.2f} to "
        f"{sweep[-1]['accept']:.2f} as the proposal scale grows from {scales[0]} to {scales[-1]}."
    )
    table = (
        ["proposal scale", "acceptance", "ESS per draw"],
        [[r["scale"], r["accept"], r["ess_per_draw"]] for r in sweep],
    )
    numbers = dict(laplace=lap, double_well=dwell, sweep=sweep)
    return DemoResult("metropolis", claim, numbers, paths, table)


# ---------------------------------------------------------------------------------------------
# sgld


def logistic_posterior(
    n: int, batch_size: int, gen: torch.Generator
) -> tuple[mcmc.Posterior, Tensor]:
    """A Bayesian logistic regression ``y ~ Bernoulli(sigmoid(a x_1 + b x_2 + c))`` with prior
    ``N(0, 5^2 I)`` on ``theta = (a, b, c)``, on ``n`` synthetic points; returns the posterior
    ``log p(theta | data) = log prior + sum_i [y_i l_i - log(1 + e^{l_i})]`` and the data."""
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    theta = torch.tensor([1.5, -1.0, 0.5], dtype=torch.float64)
    y = torch.rand(n, generator=gen, dtype=torch.float64) < torch.sigmoid(x @ theta[:2] + theta[2])
    data = torch.cat([x, y[:, None].double()], 1)

    def log_prior(th: Tensor) -> Tensor:
        return -0.5 * (th**2).sum(-1) / 25

    def log_lik(th: Tensor, batch: Tensor) -> Tensor:
        logit = th[:, None, 0] * batch[..., 0] + th[:, None, 1] * batch[..., 1] + th[:, None, 2]
        return batch[..., 2] * logit - F.softplus(logit)

    return mcmc.Posterior(log_prior, log_lik, data, dim=3, batch_size=batch_size), data


def sgld(out: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    """Stochastic-gradient Langevin (Welling & Teh 2011) ``theta' = theta + h_t g(theta) +
    sqrt(2 h_t) xi``, ``g`` the minibatch score ``grad log prior + (N/B) sum_batch grad log lik``,
    ``h_t = h (1 + t/100)^-0.55``, against full-gradient MALA on the same posterior."""
    gen = generator(seed)
    n, batch = 500, 50
    post, data = logistic_posterior(n, batch, gen)
    m_chains, m_steps = (8, 1000) if quick else (16, 1500)
    s_chains, s_steps = (16, 2000) if quick else (32, 3000)
    mala = mcmc.sample(
        post,
        "mala",
        chains=m_chains,
        steps=m_steps,
        warmup=500,
        generator=gen,
        dtype=torch.float64,
        progress=False,
    )
    sg = mcmc.sample(
        post,
        "sgld",
        chains=s_chains,
        steps=s_steps,
        warmup=500,
        step_size=2e-3,
        generator=gen,
        dtype=torch.float64,
        progress=False,
    )
    names = ["a", "b", "c"]
    ms, ss = mala.samples, sg.samples
    m_mean, s_mean = ms.reshape(-1, 3).mean(0), ss.reshape(-1, 3).mean(0)
    m_sd, s_sd = ms.reshape(-1, 3).std(0), ss.reshape(-1, 3).std(0)
    m_se, s_se = mcmc.mcse(ms), mcmc.mcse(ss)
    m_ess, s_ess = mcmc.ess(ms), mcmc.ess(ss)
    # data-point gradient evaluations per chain (warm-up included)
    m_cost = mala.grad_evals * n
    s_cost = sg.grad_evals * batch
    rows = [
        dict(
            param=names[i],
            mala_mean=m_mean[i].item(),
            mala_sd=m_sd[i].item(),
            mala_se=m_se[i].item(),
            sgld_mean=s_mean[i].item(),
            sgld_sd=s_sd[i].item(),
            sgld_se=s_se[i].item(),
            mala_ess=m_ess[i].item(),
            sgld_ess=s_ess[i].item(),
        )
        for i in range(3)
    ]

    fig = new_figure(15, 4.2)
    ax = fig.subplots(1, 3)
    a, b = ms.reshape(-1, 3).numpy(), ss.reshape(-1, 3).numpy()
    ax[0].scatter(a[::4, 0], a[::4, 1], s=1, alpha=0.3, label="MALA (full gradient)")
    ax[0].scatter(b[::8, 0], b[::8, 1], s=1, alpha=0.3, label=f"SGLD (batch {batch} of {n})")
    ax[0].set(xlabel="a", ylabel="b", title="posterior draws (a, b)")
    ax[0].legend(frameon=False, markerscale=6)
    for i, name in enumerate(names):
        lo, hi = min(a[:, i].min(), b[:, i].min()), max(a[:, i].max(), b[:, i].max())
        ax[1].hist(
            a[:, i],
            bins=60,
            range=(lo, hi),
            density=True,
            histtype="step",
            color=f"C{i}",
            label=f"{name}: MALA",
        )
        ax[1].hist(
            b[:, i],
            bins=60,
            range=(lo, hi),
            density=True,
            histtype="step",
            color=f"C{i}",
            ls="--",
            label=f"{name}: SGLD",
        )
    ax[1].legend(frameon=False, fontsize=7, ncol=3)
    ax[1].set_title("marginals: MALA solid, SGLD dashed")
    d = data.numpy()
    ax[2].scatter(d[:, 0], d[:, 1], c=d[:, 2], s=5, cmap="coolwarm", alpha=0.6)
    xs = np.linspace(-3, 3, 10)
    for th in b[:: max(1, len(b) // 30)][:30]:
        ax[2].plot(xs, -(th[0] * xs + th[2]) / th[1], color="k", lw=0.4, alpha=0.4)
    ax[2].set(xlim=(-3, 3), ylim=(-3, 3), title="data and SGLD decision boundaries")
    paths = [save_png(fig, out / "sgld.png")]

    worst = max(abs(r["sgld_mean"] - r["mala_mean"]) / r["mala_sd"] for r in rows)
    sd_ratio = [r["sgld_sd"] / r["mala_sd"] for r in rows]
    claim = (
        f"SGLD with minibatches of {batch} of {n} points agrees with full-gradient MALA on a "
        f"logistic-regression posterior: means within {worst:.3f} posterior sd, sd ratios "
        f"{', '.join(f'{r:.2f}' for r in sd_ratio)}, touching {n // batch}x fewer data points "
        f"per step ({s_cost / 1e6:.2f}M data gradients per chain against {m_cost / 1e6:.2f}M)."
    )
    table = (
        ["param", "MALA mean", "MALA sd", "SGLD mean", "SGLD sd", "MALA ESS", "SGLD ESS"],
        [
            [
                r["param"],
                r["mala_mean"],
                r["mala_sd"],
                r["sgld_mean"],
                r["sgld_sd"],
                r["mala_ess"],
                r["sgld_ess"],
            ]
            for r in rows
        ],
    )
    numbers = dict(
        rows=rows,
        n=n,
        batch=batch,
        mala_data_grads=m_cost,
        sgld_data_grads=s_cost,
        mala_accept=mala.accept_rate.mean().item(),
    )
    return DemoResult("sgld", claim, numbers, paths, table)
