"""The demonstrations: each one runs, writes pictures and measures the claim it pictures.

>>> from scorelab.demos import DEMOS, run_demo, run_all
>>> res = run_demo("langevin-1d", "out/demos")      # writes out/demos/langevin-1d/*.png
>>> res.claim, res.numbers["rows"]                  # the measured numbers behind the claim
>>> results, index = run_all("out/demos")           # every demo and out/demos/index.html

From the command line: ``scorelab demo --list``, ``scorelab demo NAME``,
``scorelab demo --all --out DIR``. Every demo takes ``quick=True`` (smaller runs, for tests) and
a ``seed``; the same seed gives the same numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from scorelab.demos._common import DemoResult
from scorelab.demos.fields import concentration, score_field, smoothing
from scorelab.demos.generative import annealed, diffusion_demo, digits_model, tweedie
from scorelab.demos.langevin import langevin_1d, langevin_2d, metropolis, random_walk, sgld
from scorelab.progress import progress as progress_counter


class Demo(NamedTuple):
    """A registered demo: a one-line summary, a paragraph for the gallery, and the function
    ``run(out: Path, *, quick: bool, seed: int) -> DemoResult``."""

    summary: str
    paragraph: str
    run: Callable[..., DemoResult]


DEMOS: dict[str, Demo] = {
    "langevin-1d": Demo(
        "tuning unadjusted Langevin on N(0, 1): slow mixing, bias, divergence",
        "Unadjusted Langevin, x' = x + h grad log p(x) + sqrt(2h) N, needs only the score. On "
        "N(0, s^2) it is the AR(1) chain x' = (1 - h/s^2) x + sqrt(2h) N, so everything is "
        "known: its draws have variance s^2 / (1 - h/(2 s^2)) instead of s^2 (biased, more so "
        "for larger steps), lag-one autocorrelation 1 - h/s^2 (small steps mix slowly: ESS per "
        "draw (h/s^2)/(2 - h/s^2)), and for h >= 2 s^2 the factor |1 - h/s^2| >= 1 makes it "
        "diverge. The pictures show chains and histograms at several step sizes and the measured "
        "ESS and variance against these formulas.",
        langevin_1d,
    ),
    "langevin-2d": Demo(
        "Langevin on ill-conditioned 2-D Gaussians: mixing slows like the condition number",
        "A Langevin step must be small enough for the stiffest direction (h < 2 sigma_min^2), "
        "and then it crawls along the widest one. On a 2-D Gaussian with condition number "
        "kappa = (sigma_max / sigma_min)^2 and h = sigma_min^2 / 2, the autocorrelation time "
        "along the slow direction is 4 kappa - 1. Measured here from the chains' effective "
        "sample size for kappa from 1 to 16; the animation shows clouds of chains relaxing "
        "from one point at kappa = 1 and kappa = 16.",
        langevin_2d,
    ),
    "random-walk": Demo(
        "Brownian motion against Langevin: without the score the walk never settles",
        "Drop the score term from Langevin and what is left, x' = x + sqrt(2h) N, is Brownian "
        "motion: its variance after t steps is 2 h t and its spread grows like sqrt(t), "
        "whatever the target. With the score, the same noise is pulled back and the chains "
        "settle on p (here N(0, 1)) at variance 1 / (1 - h/2). Both are measured on 2000 "
        "chains started at 0.",
        random_walk,
    ),
    "metropolis": Demo(
        "Metropolis on Gibbs densities exp(-u): acceptance, and Laplace sampled well",
        "Random-walk Metropolis needs only the energy u(x) of a Gibbs density p = exp(-u)/Z: "
        "propose x + step N, accept with probability min(1, exp(u(x) - u(x'))). It has no "
        "gradient and no step-size bias, so it samples the Laplace density "
        "exp(-sqrt(2)|x|)/sqrt(2), whose score is discontinuous, exactly; the estimates of its "
        "variance (1) and tail mass P(|x| > 2) = exp(-2 sqrt(2)) are checked at their Monte "
        "Carlo standard errors. A double-well energy shows the same, and the proposal-scale "
        "sweep shows the acceptance / mixing trade-off.",
        metropolis,
    ),
    "score-field": Demo(
        "a learned score is wrong where the density is low; noise fixes it",
        "The score field grad log p of a two-component mixture points toward the modes. An MLP "
        "trained by denoising score matching at one small noise level only ever sees points "
        "near the data, so its field is accurate there and arbitrary in the low-density regions "
        "between and around the modes, which is where Langevin chains start. Smoothing the "
        "density with Gaussian noise (exact fields for growing sigma in the bottom row) "
        "spreads mass everywhere, and a model trained at a large sigma is accurate in those "
        "regions too: the reason for training at many noise levels.",
        score_field,
    ),
    "smoothing": Demo(
        "Gaussian smoothing two ways: convolution, and Fourier damping exp(-sigma^2 w^2/2)",
        "Adding N(0, sigma^2) noise to X convolves its density with a Gaussian, "
        "p_sigma = p * N(0, sigma^2); in Fourier space the characteristic function is "
        "multiplied by exp(-sigma^2 w^2 / 2), damping high frequencies (fine detail) first. "
        "Both are computed on a grid for a three-component mixture and compared with each other "
        "and with the exact smoothed mixture, which scorelab knows in closed form.",
        smoothing,
    ),
    "concentration": Demo(
        "Gaussian noise in d dimensions lives near the sphere of radius sigma sqrt(d)",
        "The norm of x ~ N(0, sigma^2 I_d) follows sigma times a chi law with d degrees of "
        "freedom: its mean is close to sigma sqrt(d) and its relative spread shrinks like "
        "1/sqrt(2d). In high dimension, noisy data lies on a thin shell around the data, which "
        "is why a noise level sets the scale at which a denoiser or score works.",
        concentration,
    ),
    "tweedie": Demo(
        "Tweedie denoising of digits: x + sigma^2 score(x), PSNR before and after",
        "Tweedie's formula E[X | X + sigma N = y] = y + sigma^2 grad log p_sigma(y) turns a "
        "score into the optimal denoiser. A small MLP trained on the 8x8 digits (EDM objective) "
        "denoises held-out digits at four noise levels; the rows show clean, noisy and denoised "
        "digits, and the PSNR gain is measured over the 360 test digits.",
        tweedie,
    ),
    "annealed": Demo(
        "plain Langevin gets mixture weights wrong, annealed Langevin gets them right",
        "Song and Ermon's pitfall: for 0.2 N((-5,-5), I) + 0.8 N((5,5), I), Langevin dynamics "
        "with the exact score cannot cross between well-separated modes in any practical time, "
        "so particles stay in the basin they start in and the weights come out near 1/2. "
        "Annealed Langevin runs Langevin on the smoothed densities p_sigma for decreasing sigma: "
        "at large sigma the modes overlap and particles move between them, so the weights are "
        "right by the time sigma is small.",
        annealed,
    ),
    "diffusion": Demo(
        "diffusion: data to noise forward, and noise to data by reverse SDE and ODE",
        "The forward process x_t = s(t)(x_0 + sigma(t) N) turns any data into Gaussian noise. "
        "Run backward with the score, the reverse SDE (stochastic) and the probability-flow ODE "
        "(deterministic, same marginals) turn noise into data. Shown on an 8-mode ring with the "
        "exact denoiser (samples checked against exact ones) and on the digits with the small "
        "learned model, as animations.",
        diffusion_demo,
    ),
    "sgld": Demo(
        "stochastic-gradient Langevin on a logistic-regression posterior, against MALA",
        "Stochastic-gradient Langevin replaces the full-data score of a posterior by an unbiased "
        "minibatch estimate and decreases the step size, so the injected noise dominates the "
        "gradient noise. On a Bayesian logistic regression with 500 points and minibatches of "
        "50 it reproduces the posterior of full-gradient MALA while touching a tenth of the data "
        "per step.",
        sgld,
    ),
}


def check_name(name: str) -> Demo:
    """The demo called ``name``; a ``ValueError`` lists the valid names otherwise."""
    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; choose one of: {', '.join(DEMOS)}")
    return DEMOS[name]


def _jsonable(value: object) -> object:
    """Numbers for ``result.json``: floats, lists and dicts as they are, anything else as str."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    try:
        return float(value)  # numpy and 0-d torch numbers
    except (TypeError, ValueError):
        return str(value)


def run_demo(
    name: str, out: str | Path = "scorelab-out/demos", *, quick: bool = False, seed: int = 0
) -> DemoResult:
    """Run one demo into ``out/NAME/``: its pictures and ``result.json`` (the measured numbers
    and the claim). Returns the ``DemoResult``."""
    demo = check_name(name)
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = demo.run(folder, quick=quick, seed=seed)
    result.seconds = time.perf_counter() - start
    record = dict(
        name=name,
        claim=result.claim,
        seconds=result.seconds,
        quick=quick,
        seed=seed,
        numbers=_jsonable(result.numbers),
        files=[p.name for p in result.paths],
    )
    path = folder / "result.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    result.paths.append(path)
    return result


def run_all(
    out: str | Path = "scorelab-out/demos",
    *,
    names: Sequence[str] | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[list[DemoResult], Path]:
    """Run every demo (or ``names``) into ``out/`` and write the gallery ``out/index.html``."""
    from scorelab.demos.gallery import write_gallery

    chosen = list(DEMOS) if names is None else list(names)
    for name in chosen:
        check_name(name)
    results = []
    with progress_counter(len(chosen), "demos", unit="demo", show=progress) as bar:
        for name in chosen:
            bar.set_postfix_str(name)
            results.append(run_demo(name, out, quick=quick, seed=seed))
            bar.update(1)
    return results, write_gallery(results, Path(out))


__all__ = [
    "DEMOS",
    "Demo",
    "DemoResult",
    "check_name",
    "digits_model",
    "run_all",
    "run_demo",
]
