"""Generating with scores: Tweedie denoising of digits, the mixture-weights pitfall of plain
Langevin fixed by annealing, and diffusion forward and backward on a 2-D mixture and on digits.

The 2-D demos use a Gaussian mixture's exact denoiser (``GaussianMixture.denoise``) as the
model, so what they show is the sampler, not a network's error. The digits demos share one
small MLP denoiser, trained once per process (``digits_model``) in well under a minute.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scorelab import densities, diffusion
from scorelab.data import Dataset, load
from scorelab.demos._common import (
    DemoResult,
    bare,
    generator,
    new_figure,
    save_gif,
    save_png,
)
from scorelab.metrics import psnr, sliced_wasserstein
from scorelab.nets import Denoiser
from scorelab.training import TrainConfig, train
from scorelab.viz import draw_grid

# ---------------------------------------------------------------------------------------------
# the shared digits model


@dataclass(frozen=True)
class DigitsModel:
    """A denoiser ``D(x, sigma)`` for the 8x8 digits (pixels in [-1, 1]) and its data."""

    model: Denoiser
    train: Dataset
    test: Dataset
    steps: int
    seconds: float


_DIGITS_CACHE: dict[tuple[bool, int], DigitsModel] = {}


def digits_model(quick: bool = False, seed: int = 0) -> DigitsModel:
    """Train (once per process and setting) an MLP denoiser on the flattened 8x8 digits with the
    EDM objective and preconditioning (Karras et al. 2022); later calls return the cached one,
    so the tweedie and diffusion demos of one ``--all`` run share it."""
    key = (quick, seed)
    if key not in _DIGITS_CACHE:
        steps = 400 if quick else 2000
        with tempfile.TemporaryDirectory(prefix="scorelab-demo-digits-") as tmp:
            cfg = TrainConfig(
                data="digits",
                net="mlp",
                parameterization="edm",
                objective="edm",
                steps=steps,
                batch_size=128,
                lr=2e-3,
                warmup_steps=50,
                ema_decay=0.995,
                net_kwargs={"hidden": 256, "depth": 3},
                seed=seed,
                device="cpu",
                checkpoint_every=steps,
                log_every=steps,
                out=str(Path(tmp) / "run"),
            )
            start = time.perf_counter()
            res = train(cfg, progress=False)
            seconds = time.perf_counter() - start
        model = res.model.eval()
        test = load("digits", split="test", normalization=res.data.normalization)
        _DIGITS_CACHE[key] = DigitsModel(model, res.data, test, steps, seconds)
    return _DIGITS_CACHE[key]


def _unit(x: Tensor) -> Tensor:
    """Digits in [-1, 1] to [0, 1] for display."""
    return ((x + 1) / 2).clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# tweedie


def tweedie(out: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    """Tweedie denoising ``E[x | y] = y + sigma^2 grad log p_sigma(y)`` of held-out digits with
    a learned score, at several noise levels: PSNR of the noisy and the denoised images."""
    dm = digits_model(quick, seed)
    gen = generator(seed + 1)
    x = dm.test.x
    sigmas = [0.1, 0.2, 0.5, 1.0]
    rows, shown = [], []
    show = slice(0, 12)
    for s in sigmas:
        y = x + s * torch.randn(x.shape, generator=gen)
        with torch.no_grad():
            d = y + s**2 * dm.model.score(y, s)  # Tweedie's formula
        p_noisy, p_den = psnr(y, x, 2.0), psnr(d, x, 2.0)
        gain = p_den - p_noisy
        rows.append(
            dict(
                sigma=s,
                psnr_noisy=p_noisy.mean().item(),
                psnr_denoised=p_den.mean().item(),
                gain=gain.mean().item(),
                gain_se=(gain.std() / math.sqrt(len(gain))).item(),
                n=len(gain),
            )
        )
        shown.append((y[show], d[show]))

    fig = new_figure(12, 1.2 * (1 + 2 * len(sigmas)))
    ax = fig.subplots(1 + 2 * len(sigmas), 1)
    draw_grid(ax[0], _unit(x[show]), nrow=12, title="clean (held-out digits)")
    for i, (s, (y, d)) in enumerate(zip(sigmas, shown, strict=True)):
        r = rows[i]
        draw_grid(
            ax[1 + 2 * i], _unit(y), nrow=12, title=f"noisy, σ = {s}: PSNR {r['psnr_noisy']:.1f} dB"
        )
        draw_grid(
            ax[2 + 2 * i],
            _unit(d),
            nrow=12,
            title=f"denoised y + σ² s(y, σ): PSNR {r['psnr_denoised']:.1f} dB",
        )
    paths = [save_png(fig, out / "tweedie.png")]
    claim = (
        f"Tweedie denoising with an MLP score trained {dm.steps} steps on the digits raises the "
        f"PSNR of {rows[0]['n']} held-out digits at every noise level: "
        + ", ".join(
            f"{r['psnr_noisy']:.1f} -> {r['psnr_denoised']:.1f} dB at sigma = {r['sigma']}"
            for r in rows
        )
        + "."
    )
    table = (
        ["sigma", "PSNR noisy (dB)", "PSNR denoised (dB)", "gain (dB)", "gain SE"],
        [[r["sigma"], r["psnr_noisy"], r["psnr_denoised"], r["gain"], r["gain_se"]] for r in rows],
    )
    numbers = dict(rows=rows, train_steps=dm.steps, train_seconds=dm.seconds)
    return DemoResult("tweedie", claim, numbers, paths, table)


# ---------------------------------------------------------------------------------------------
# annealed


def annealed(out: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    """Song & Ermon's pitfall (2019, Sec. 3.2): for ``0.2 N((-5,-5), I) + 0.8 N((5,5), I)``,
    Langevin ``x <- x + h s(x) + sqrt(2h) z`` with the exact score keeps each particle in the
    basin it starts in, so the weights come out near 1/2; annealed Langevin over decreasing
    ``sigma_i`` (Algorithm 1) mixes while the smoothed modes overlap and recovers 0.2."""
    gm = densities.GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], 1.0)
    n = 1000 if quick else 2000
    proc = diffusion.VE(sigma_min=0.1, sigma_max=20.0)
    frames: dict[str, list[tuple[np.ndarray, float]]] = {"plain": [], "annealed": []}

    def recorder(name: str, every: int):
        def cb(info: dict) -> None:
            if info["i"] % every == 0:
                frames[name].append((info["x"][:400].numpy().copy(), float(info["sigma"])))

        return cb

    plain = diffusion.sample(
        gm,
        n,
        sampler="langevin",
        nfe=1000,
        process=proc,
        step_size=0.05,
        generator=generator(seed),
        progress=False,
        callback=recorder("plain", 25),
    ).samples
    ann = diffusion.sample(
        gm,
        n,
        sampler="annealed_langevin",
        nfe=1000,
        process=proc,
        steps_per_level=100,
        eps=0.01,
        generator=generator(seed + 1),
        progress=False,
        callback=recorder("annealed", 25),
    ).samples
    frac_plain = (plain[:, 0] < 0).double().mean().item()
    frac_ann = (ann[:, 0] < 0).double().mean().item()
    se = math.sqrt(0.2 * 0.8 / n)

    lim = 10.0
    g = np.linspace(-lim, lim, 120)
    xx, yy = np.meshgrid(g, g)
    pts = torch.from_numpy(np.stack([xx, yy], -1).reshape(-1, 2))
    zz = gm.log_prob(pts).exp().reshape(120, 120).numpy()
    fig = new_figure(14, 4.5)
    ax = fig.subplots(1, 3)
    for a, x, title in (
        (ax[0], plain, f"Langevin, exact score: {frac_plain:.2f} in the 0.2 mode"),
        (ax[1], ann, f"annealed Langevin: {frac_ann:.2f} in the 0.2 mode"),
    ):
        a.contour(xx, yy, zz, levels=5, colors="k", linewidths=0.6)
        a.scatter(x[:, 0], x[:, 1], s=2, alpha=0.3)
        a.set(aspect="equal", xlim=(-lim, lim), ylim=(-lim, lim), title=title)
    labels = ["exact", "Langevin", "annealed"]
    ax[2].bar(
        labels, [0.2, frac_plain, frac_ann], color=["0.5", "C3", "C2"], yerr=[0, 2 * se, 2 * se]
    )
    ax[2].axhline(0.2, color="k", ls=":")
    ax[2].set(ylabel="weight of the (-5, -5) mode", title=f"{n} particles, ± 2 binomial SE")
    paths = [save_png(fig, out / "annealed.png")]

    fig = new_figure(9, 4.5)
    axs = fig.subplots(1, 2)
    dots = []
    for a, name in zip(axs, ("plain", "annealed"), strict=True):
        a.contour(xx, yy, zz, levels=5, colors="k", linewidths=0.6)
        dots.append(a.scatter(*frames[name][0][0][:, :2].T, s=3, alpha=0.5))
        a.set(aspect="equal", xlim=(-lim, lim), ylim=(-lim, lim))
        bare(a)
    count = min(len(frames["plain"]), len(frames["annealed"]))

    def update(i: int) -> None:
        for a, d, name in zip(axs, dots, ("plain", "annealed"), strict=True):
            x, sigma = frames[name][i]
            d.set_offsets(x)
            what = "Langevin at σ = 0.1" if name == "plain" else f"annealed, σ = {sigma:.2f}"
            a.set_title(f"{what}: step {25 * i}", fontsize=10)

    paths.append(save_gif(fig, update, count, out / "annealed.gif", quick=quick))
    claim = (
        f"For 0.2 N((-5,-5), I) + 0.8 N((5,5), I), Langevin with the exact score puts "
        f"{frac_plain:.3f} of {n} particles in the 0.2 mode (started from a broad prior, each "
        f"stays in its basin), annealed Langevin puts {frac_ann:.3f} (binomial SE {se:.3f})."
    )
    table = (
        ["sampler", "weight of (-5,-5) mode", "exact", "binomial SE"],
        [["Langevin (sigma = 0.1)", frac_plain, 0.2, se], ["annealed Langevin", frac_ann, 0.2, se]],
    )
    numbers = dict(n=n, frac_plain=frac_plain, frac_annealed=frac_ann, se=se)
    return DemoResult("annealed", claim, numbers, paths, table)


# ---------------------------------------------------------------------------------------------
# diffusion


def _vp(x: Tensor, sigma: float) -> Tensor:
    """Sigma-space ``x`` in the VP frame ``x / sqrt(1 + sigma^2)``, where noise has unit scale."""
    return x / math.sqrt(1 + sigma**2)


def _run(
    model: object,
    n: int,
    sampler: str,
    nfe: int,
    process: str,
    gen: torch.Generator,
    shape: tuple[int, ...] | None = None,
    keep: int = 400,
) -> tuple[diffusion.SampleResult, list[tuple[Tensor, float]]]:
    """``diffusion.sample`` and snapshots ``(x in the VP frame, sigma)`` of the first ``keep``
    samples after each step."""
    snaps: list[tuple[Tensor, float]] = []

    def cb(info: dict) -> None:
        s = float(info["sigma_next"])
        snaps.append((_vp(info["x"][:keep], s).clone(), s))

    res = diffusion.sample(
        model,
        n,
        sampler=sampler,
        nfe=nfe,
        process=process,
        shape=shape,
        generator=gen,
        progress=False,
        callback=cb,
    )
    return res, snaps


def _pick(seq: list, count: int) -> list:
    """``count`` evenly spaced items of ``seq``, first and last included."""
    idx = np.unique(np.linspace(0, len(seq) - 1, count).round().astype(int))
    return [seq[i] for i in idx]


def diffusion_demo(out: Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    """Diffusion both ways. Forward: ``x_t = s(t)(x_0 + sigma(t) n)`` (VP) turns data into
    ``N(0, I)``. Backward from noise: the reverse SDE (Euler-Maruyama, Song et al. 2021, eq. 6)
    and the probability-flow ODE (Heun, Karras et al. 2022) with the exact denoiser of an
    8-mode ring, and with a learned denoiser on the digits."""
    gen = generator(seed)
    ring = densities.make("ring")  # 8 equal Gaussians, radius 4, std 0.5
    vp = diffusion.VP()
    n = 2000 if quick else 4000
    x0 = ring.sample(n, generator=gen)
    ts = torch.linspace(0, 1, 31)
    fwd = [vp.marginal(x0[:400], torch.full((400,), float(t)), generator=gen)[0] for t in ts]
    sigma_fwd = [float(vp.sigma(t)) for t in ts]
    xT = vp.marginal(x0, torch.ones(n), generator=gen)[0]
    fwd_var = xT.double().var(0).tolist()

    sde, sde_snaps = _run(ring, n, "euler_maruyama", 200, "vp", gen)
    ode, ode_snaps = _run(ring, n, "heun", 35, "edm", gen)
    exact = ring.sample(n, generator=gen)
    proj = generator(seed + 7)
    sw = {
        name: sliced_wasserstein(x, exact, generator=proj).item()
        for name, x in (("sde", sde.samples), ("ode", ode.samples))
    }
    # the spread of the same distance between two exact sample sets: the floor to compare with
    floor = [
        sliced_wasserstein(ring.sample(n, generator=gen), exact, generator=proj).item()
        for _ in range(20)
    ]
    means = ring.component_means.float()

    def mode_fracs(x: Tensor) -> list[float]:
        nearest = torch.cdist(x.float(), means).argmin(-1)
        return torch.bincount(nearest, minlength=8).double().div(len(x)).tolist()

    fracs = {"sde": mode_fracs(sde.samples), "ode": mode_fracs(ode.samples)}

    # digits
    dm = digits_model(quick, seed)
    m = 400
    dsde, dsde_snaps = _run(dm.model, m, "euler_maruyama", 200, "vp", gen, shape=(1, 8, 8), keep=16)
    dode, dode_snaps = _run(dm.model, m, "heun", 35, "edm", gen, shape=(1, 8, 8), keep=16)
    test = dm.test.x
    sw_digits = {
        "sde": sliced_wasserstein(dsde.samples, test, generator=proj).item(),
        "ode": sliced_wasserstein(dode.samples, test, generator=proj).item(),
        "train_vs_test": sliced_wasserstein(dm.train.x[:m], test, generator=proj).item(),
        "noise_vs_test": sliced_wasserstein(
            torch.randn(m, 1, 8, 8, generator=gen).clamp(-1, 1), test, generator=proj
        ).item(),
    }
    dfwd_t = torch.linspace(0, 1, 9)
    dfwd = [vp.marginal(test[:8], torch.full((8,), float(t)), generator=gen)[0] for t in dfwd_t]

    # --- pictures
    lim = 3.2
    fig = new_figure(15, 9.5)
    ax = fig.subplots(3, 5)
    for j, k in enumerate(np.linspace(0, len(fwd) - 1, 5).round().astype(int)):
        x = fwd[k]
        ax[0, j].scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
        ax[0, j].set_title(f"forward t = {ts[k]:.2f}, σ = {sigma_fwd[k]:.2g}", fontsize=9)
    for row, snaps, name in ((1, sde_snaps, "reverse SDE"), (2, ode_snaps, "probability-flow ODE")):
        for j, (x, s) in enumerate(_pick(snaps, 5)):
            ax[row, j].scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, color="C1" if row == 1 else "C2")
            ax[row, j].set_title(f"{name}, σ = {s:.2g}", fontsize=9)
    for a in ax.ravel():
        a.set(aspect="equal", xlim=(-lim * 2, lim * 2), ylim=(-lim * 2, lim * 2))
    fig.suptitle(
        "8-mode ring in the VP frame x / sqrt(1 + σ²): data to noise, and back "
        "with the exact denoiser"
    )
    paths = [save_png(fig, out / "diffusion-2d.png")]

    def rows_in_time(frames: list[Tensor]) -> Tensor:
        """One row per digit, one column per time: ``[4 * len(frames), 1, 8, 8]``."""
        return torch.stack([f[:4] for f in frames], 1).reshape(-1, 1, 8, 8)

    fig = new_figure(15, 2.6)
    ax = fig.subplots(1, 3)
    draw_grid(ax[0], _unit(rows_in_time(dfwd)), nrow=9, title="forward, t = 0 to 1 (left to right)")
    draw_grid(
        ax[1],
        _unit(rows_in_time([x for x, _ in _pick(dsde_snaps, 9)])),
        nrow=9,
        title=f"reverse SDE ({dsde.nfe} steps) from noise",
    )
    draw_grid(
        ax[2],
        _unit(rows_in_time([x for x, _ in _pick(dode_snaps, 9)])),
        nrow=9,
        title=f"probability-flow ODE (Heun, {dode.nfe} evaluations) from noise",
    )
    paths.append(save_png(fig, out / "diffusion-digits.png"))

    # animations: forward then backward, for the ring and for the digits
    fig = new_figure(12, 4.2)
    axs = fig.subplots(1, 3)
    seq_f = [(x, s) for x, s in zip(fwd, sigma_fwd, strict=True)]
    seqs = [seq_f, _pick(sde_snaps, 31), _pick(ode_snaps, 31)]
    names = ["forward: data to noise", "reverse SDE", "probability-flow ODE"]
    dots = []
    for a, seq, c in zip(axs, seqs, ("C0", "C1", "C2"), strict=True):
        dots.append(a.scatter(*seq[0][0].T, s=3, alpha=0.5, color=c))
        a.set(aspect="equal", xlim=(-lim * 2, lim * 2), ylim=(-lim * 2, lim * 2))
        bare(a)

    def update(i: int) -> None:
        for a, d, seq, name in zip(axs, dots, seqs, names, strict=True):
            x, s = seq[min(i, len(seq) - 1)]
            d.set_offsets(x)
            a.set_title(f"{name}\nσ = {s:.3g}", fontsize=10)

    paths.append(save_gif(fig, update, 31, out / "diffusion-2d.gif", quick=quick))

    fig = new_figure(9, 3.4)
    axs = fig.subplots(1, 3)
    dseqs = [
        [
            (x, float(vp.sigma(t)))
            for x, t in zip(
                [
                    vp.marginal(test[:16], torch.full((16,), float(t)), generator=generator(seed))[
                        0
                    ]
                    for t in torch.linspace(0, 1, 25)
                ],
                torch.linspace(0, 1, 25),
                strict=True,
            )
        ],
        _pick(dsde_snaps, 25),
        _pick(dode_snaps, 25),
    ]
    images = []
    for a, seq, name in zip(axs, dseqs, names, strict=True):
        draw_grid(a, _unit(seq[0][0]), nrow=4, title=name)
        images.append(a.images[0])

    def tile(x: Tensor) -> np.ndarray:
        """The same 4x4 tiling as ``draw_grid`` (one pixel of white between digits)."""
        canvas = np.ones((4 * 9 + 1, 4 * 9 + 1))
        u = _unit(x).numpy()
        for k in range(16):
            r, q = divmod(k, 4)
            canvas[1 + r * 9 : 9 + r * 9, 1 + q * 9 : 9 + q * 9] = u[k, 0]
        return canvas

    def update_digits(i: int) -> None:
        for a, im, seq, name in zip(axs, images, dseqs, names, strict=True):
            x, s = seq[min(i, len(seq) - 1)]
            im.set_data(tile(x))
            a.set_title(f"{name}\nσ = {s:.3g}", fontsize=9)

    paths.append(save_gif(fig, update_digits, 25, out / "diffusion-digits.gif", quick=quick))

    floor_hi = float(np.mean(floor) + 5 * np.std(floor, ddof=1))
    claim = (
        f"The VP forward process leaves per-coordinate variance {fwd_var[0]:.3f}, "
        f"{fwd_var[1]:.3f} at t = 1 (N(0, I): 1); from that noise, the reverse SDE and the "
        f"probability-flow ODE with the exact ring denoiser reach sliced Wasserstein "
        f"{sw['sde']:.3f} and {sw['ode']:.3f} to exact samples (exact-vs-exact "
        f"{np.mean(floor):.3f}); on the digits the learned model gives {sw_digits['sde']:.3f} "
        f"(SDE) and {sw_digits['ode']:.3f} (ODE) to the test set, against "
        f"{sw_digits['train_vs_test']:.3f} for training digits and "
        f"{sw_digits['noise_vs_test']:.3f} for clipped noise."
    )
    table = (
        ["", "reverse SDE", "probability-flow ODE", "reference"],
        [
            [
                "ring: sliced Wasserstein to exact",
                sw["sde"],
                sw["ode"],
                f"exact vs exact {np.mean(floor):.3f}",
            ],
            [
                "ring: smallest / largest mode weight",
                f"{min(fracs['sde']):.3f} / {max(fracs['sde']):.3f}",
                f"{min(fracs['ode']):.3f} / {max(fracs['ode']):.3f}",
                "0.125",
            ],
            [
                "digits: sliced Wasserstein to test",
                sw_digits["sde"],
                sw_digits["ode"],
                f"train {sw_digits['train_vs_test']:.3f}, noise {sw_digits['noise_vs_test']:.3f}",
            ],
            ["digits: network evaluations", dsde.nfe, dode.nfe, ""],
        ],
    )
    numbers = dict(
        n=n,
        forward_var=fwd_var,
        sw=sw,
        sw_floor=floor,
        sw_floor_bound=floor_hi,
        mode_fracs=fracs,
        sw_digits=sw_digits,
        digits_n=m,
        nfe=dict(sde=sde.nfe, ode=ode.nfe),
    )
    return DemoResult("diffusion", claim, numbers, paths, table)


__all__ = ["DigitsModel", "annealed", "diffusion_demo", "digits_model", "tweedie"]
