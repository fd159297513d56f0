"""``scorelab quickstart``: the main job, train -> sample -> evaluate, in a few CPU minutes.

1. MCMC needs only log p and its score: HMC on a 2-D Gaussian mixture, checked against its
   exact moments in units of their Monte Carlo standard error, with a PASS/FAIL verdict.
2. A 2-D toy set (two moons): train an MLP denoiser (EDM), sample with the library's default
   sampler, compare with held-out data by sliced Wasserstein, next to the data-vs-data floor.
3. The bundled 8x8 digits: train a small U-Net by the recipe measured per CPU-second
   (``DIGITS_RECIPE``; benchmarks/results/training.md), sample a grid, report sliced
   Wasserstein, the Frechet distance of classifier features and the memorization ratio against
   the test split (each next to the train-vs-test floor), bits/dim on train and test examples,
   and Tweedie denoising PSNR.
Each run folder it writes can be used with `scorelab sample` and `scorelab denoise`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from scorelab.cli.common import (
    add_overwrite,
    load_run_data,
    out_dir,
    to_unit_interval,
    write_run_record,
)
from scorelab.cli.denoise_cmd import tweedie_psnr
from scorelab.cli.eval_cmd import likelihood_table, sample_metrics
from scorelab.cli.sample_cmd import data_moments

if TYPE_CHECKING:
    from scorelab.densities import GaussianMixture
    from scorelab.training import TrainConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quickstart",
        help="the main job: MCMC check, then train, sample and evaluate on moons and digits",
        description=__doc__,
    )
    p.add_argument("--out", default="scorelab-out/quickstart", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test, not a result)")
    add_overwrite(p)
    p.set_defaults(run=run)


def mixture() -> GaussianMixture:
    """Three components, one of them elongated and tilted."""
    import torch

    from scorelab import densities

    tilted = torch.tensor([[1.0, 0.7], [0.7, 0.8]])
    covs = torch.stack([tilted, 0.3 * torch.eye(2), torch.diag(torch.tensor([0.2, 1.0]))])
    return densities.GaussianMixture([0.5, 0.3, 0.2], [[-1.5, -0.5], [1.5, 1.5], [2.0, -1.5]], covs)


CHAINS = 32  # MCMC check: chains
# the digits recipe (issue 21; benchmarks/results/training.md): TrainConfig fields but steps
DIGITS_RECIPE = dict(
    data="digits",
    net="unet",
    net_kwargs={"base_channels": 16, "num_res_blocks": 1},
    batch_size=64,
    lr=2e-3,
    lr_schedule="cosine",
    warmup_steps=100,
    ema_decay=0.999,
    # class-conditional (label dropout 0.1): sampled with classes drawn from the data, its
    # digits are 0.76 above the floor against 2.12 unconditionally (training seeds 0-4)
    conditional=True,
)
DIGITS_STEPS = 1000
# digits sampling: on the recipe's models (training seeds 0, 1, 2; 3 draws x 1000, same seeds)
# Heun at 35 NFE is 0.39 / 0.78 / 0.74 FD better than diffusion.sample's default (UniPC 20),
# and UniPC 35 is no better than UniPC 20 (seed 0); ~1 CPU-s more for 400 digits
DIGITS_SAMPLING = {"sampler": "heun", "nfe": 35}


def mcmc_check(folder: Path, seed: int, quick: bool) -> tuple[list[str], dict]:
    """HMC on the mixture: estimated mean and variance against the exact ones, in MCSE units,
    and the verdict (R-hat, ESS, divergences, E-BFMI); the printed lines and their numbers."""
    import torch
    from matplotlib.figure import Figure

    from scorelab import mcmc
    from scorelab.viz import plot_samples_over_density

    gm = mixture()
    # HMC with per-chain step sizes hops between the modes: R-hat 1.004-1.005, bulk ESS > 5000
    # in 2000 draws on seeds 0-3, in 10 s (NUTS: 1.008 in 3000 draws, 46 s; MALA's 2000 gave
    # 1.058); --quick is a smoke run and may print a FAIL verdict
    steps = 300 if quick else 2000
    res = mcmc.sample(gm, "hmc", chains=CHAINS, steps=steps, warmup=steps // 2,
                      generator=torch.Generator().manual_seed(seed))  # fmt: skip
    x = res.samples.double()
    lines = [res.report(), "check against the exact moments (z = error / MCSE):"]
    checks = res.verdict()
    numbers = {"kernel": "hmc", "chains": CHAINS, "draws": steps, "step_size": res.step_size,
               "acceptance": res.accept_rate.mean().item(), "grad_evals": res.grad_evals,
               "divergences": int(res.divergences.sum()), "seconds": res.wall_time,
               "summary": res.summary().to_dict(), "check": [],
               "verdict": {"passed": all(c.passed for c in checks),
                           "checks": [vars(c) for c in checks]}}  # fmt: skip
    for label, series, truth in (("mean", x, gm.mean), ("var", (x - gm.mean) ** 2, gm.cov.diag())):
        est, se = series.mean((0, 1)), mcmc.mcse(series)
        for i in range(2):
            z = ((est[i] - truth[i]) / se[i]).item()
            lines.append(
                f"  {label}[{i}]  exact {truth[i]:8.4f}  estimate {est[i]:8.4f}  z {z:+.2f}"
            )
            numbers["check"].append({"moment": f"{label}[{i}]", "exact": truth[i].item(),
                                     "estimate": est[i].item(), "z": z})  # fmt: skip
    fig = Figure(figsize=(5, 5), layout="constrained")
    plot_samples_over_density(fig.add_subplot(), gm, res.samples.reshape(-1, 2).numpy(),
                              "HMC draws over the exact density")  # fmt: skip
    fig.savefig(folder / "mcmc.png", dpi=110)
    return lines, numbers


def digits_config(
    seed: int, out: str, *, steps: int | None = None, quick: bool = False, device: str = "auto"
) -> TrainConfig:
    """The quickstart's digits recipe, chosen by quality per training CPU-second
    (``python benchmarks/training.py --quality``, issue 21): the small U-Net, a learning rate
    that decays to zero by half a cosine (Loshchilov & Hutter 2017) and an EMA no longer than
    the run can fill. ``steps`` overrides the length (the benchmark's budget curve)."""
    from scorelab.training import TrainConfig

    steps = steps or (30 if quick else DIGITS_STEPS)
    return TrainConfig(**copy.deepcopy(DIGITS_RECIPE), steps=steps, seed=seed, device=device,
                       out=out)  # fmt: skip


def train_sample_evaluate(
    name: str, cfg: TrainConfig, n: int, sampling: dict | None = None
) -> tuple[list, dict]:
    """Train ``cfg``, sample ``n`` with ``scorelab.diffusion.sample`` (its defaults, or the
    options ``sampling``; with the training data's moments, as ``scorelab sample`` does: the
    data-aware prior and levels placed by the data's scale), and compare with held-out data,
    next to the same metrics of training data (the data floor). Times are wall-clock and CPU
    (``time.process_time``, every thread of this process)."""
    import torch

    from scorelab import diffusion
    from scorelab.training import train

    t0, c0 = time.perf_counter(), time.process_time()
    res = train(cfg)
    t_train, cpu_train = time.perf_counter() - t0, time.process_time() - c0
    record = {"data": {"normalization": res.data.normalization.to_dict()}, "train": cfg.to_dict()}
    held = load_run_data(record, heldout=True)
    moments = data_moments(Path(cfg.out), record, res.data)  # stored for `scorelab sample`
    labels = None  # a class-conditional model: classes drawn from the data, x ~ p(x | class)
    if res.model.num_classes is not None:
        labels = res.data.draw_labels(n, torch.Generator().manual_seed(cfg.seed))
    samples = diffusion.sample(res.model, n, generator=torch.Generator().manual_seed(cfg.seed),
                               prior_moments=moments, cond=labels, **(sampling or {}))  # fmt: skip
    metrics, floor = sample_metrics(samples.samples, held, res.data, cfg.seed)
    lines = [
        f"{name}: trained {cfg.steps} steps in {t_train:.0f} s ({cpu_train:.0f} CPU-s); {n} "
        f"samples, {samples.sampler} {samples.nfe} NFE in {samples.wall_time:.1f} s"
        + ("" if labels is None else ", classes drawn from the training data's frequencies"),
        f"  sliced Wasserstein to held-out data {metrics['sliced_wasserstein']:.4f} "
        f"(data-vs-data floor {floor['sliced_wasserstein']:.4f})",
    ]
    if "frechet_distance" in metrics:
        lines.append(
            f"  Frechet distance of classifier features {metrics['frechet_distance']:.2f} "
            f"(train-vs-test floor {floor['frechet_distance']:.2f})"
        )
    lines.append(
        f"  memorization ratio {metrics['memorization_ratio']:.3f} (about 1: generalizes; far "
        "below 1: copies)"
    )
    numbers = {"run": str(cfg.out), "train_steps": cfg.steps, "train_s": t_train,
               "train_cpu_s": cpu_train, "n_samples": n, "sampler": samples.sampler,
               "nfe": samples.nfe,
               "sample_s": samples.wall_time, "metrics": metrics, "floor": floor}  # fmt: skip
    return lines, {"result": res, "samples": samples.samples, "held": held, "metrics": metrics,
                   "numbers": numbers}  # fmt: skip


def bits_per_dim_lines(model, train, held, n: int, seed: int) -> tuple[list[str], dict]:
    """Dequantized bits/dim on ``n`` training and ``n`` test examples (the gap is overfitting):
    the printed lines and ``{split: likelihood table}`` (as ``scorelab eval --nll`` stores). A
    class-conditional model is the class mixture it samples: each example scored by its own
    label (``likelihood_table``'s ``class_prior``, a bound)."""
    lines, tables = [], {}
    prior = None if model.num_classes is None else train.class_frequencies()
    for data in (train, held):
        t0 = time.perf_counter()
        tab = likelihood_table(model, data, n, seed, hutchinson=True, class_prior=prior)
        tab["seconds"] = time.perf_counter() - t0
        tables[data.split] = tab
        lines.append(
            f"  bits/dim on {tab['n']} {data.split} examples {tab['bits_per_dim']:.3f} +- "
            f"{tab['bits_per_dim_se']:.3f} ({tab['seconds']:.0f} s; uniform over "
            "17 levels would be 4.09)"
        )
    if prior is not None:
        lines.append("  (class mixture: each example scored by log p(class) + log p(x | class), "
                     "a bound on log p(x))")  # fmt: skip
    return lines, tables


def _load() -> float:
    """The 1-minute load average (NaN where the system has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return float("nan")


# torch threads for the whole command unless --threads is given: its models are small (an MLP,
# a 228k-parameter U-Net on 8x8 images), and a second thread costs more in synchronization than
# it computes. Measured back to back on the 2-core machine at load ~1 (the same numbers either
# way): 80 s (80 CPU-s) on one thread against 148 s (151 CPU-s) with torch's default of two,
# whose idle OpenMP threads sleep between operations (the CLI's OMP_WAIT_POLICY=PASSIVE);
# digits training alone 39 s vs 74 s.
QUICKSTART_THREADS = 1


def run(args: argparse.Namespace) -> int:
    import torch

    if getattr(args, "threads", None) is not None:
        return _run(args)
    before = torch.get_num_threads()
    torch.set_num_threads(QUICKSTART_THREADS)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(before)


def _run(args: argparse.Namespace) -> int:
    import torch
    from matplotlib.figure import Figure

    from scorelab.training import TrainConfig
    from scorelab.viz import draw_grid, scatter_2d

    folder = out_dir(args.out, "quickstart", args.overwrite)
    q = args.quick
    t0, c0, load0 = time.perf_counter(), time.process_time(), _load()
    lines: list[str] = []
    numbers: dict = {"quick": q, "seed": args.seed}

    def report(*new: str) -> None:  # print as soon as known: a stage's header as it starts
        lines.extend(new)
        print("\n".join(new), flush=True)

    report("== 1. MCMC with the exact score")
    text, numbers["mcmc"] = mcmc_check(folder, args.seed, q)
    report(*text, "")

    report("== 2. two moons (MLP, EDM)")
    moons_cfg = TrainConfig(data="moons", n=10_000, steps=60 if q else 1500, batch_size=256,
                            seed=args.seed, out=str(folder / "moons"),
                            net_kwargs={"hidden": 128, "depth": 3, "emb_dim": 64})  # fmt: skip
    text, moons = train_sample_evaluate("moons", moons_cfg, 2000)
    numbers["moons"] = moons["numbers"]
    report(*text, "")

    report("== 3. digits (U-Net, EDM)")
    digits_cfg = digits_config(args.seed, str(folder / "digits"), quick=q)
    text, digits = train_sample_evaluate("digits", digits_cfg, 400, DIGITS_SAMPLING)
    numbers["digits"] = digits["numbers"]
    report(*text)
    model = digits["result"].model
    text, tables = bits_per_dim_lines(model, digits["result"].data, digits["held"], 8 if q else 50,
                                      args.seed)  # fmt: skip
    numbers["digits"]["bits_per_dim"] = tables
    report(*text)
    # where scorelab report (and eval) look for a run's likelihood: its eval.json
    eval_json = {"input": digits_cfg.out, "likelihood": tables["test"],
                 "likelihood_train": tables["train"], "by": "scorelab quickstart"}  # fmt: skip
    Path(digits_cfg.out, "eval.json").write_text(json.dumps(eval_json, indent=2) + "\n")
    held = digits["held"]
    labels = None if model.num_classes is None else held.labels  # denoise given the class
    rows = tweedie_psnr(model, held.x, [0.2, 0.5], args.seed, 2.0, labels)
    numbers["digits"]["denoising_psnr"] = []
    for sigma, (_, _, p_noisy, p_den) in zip([0.2, 0.5], rows, strict=True):
        report(f"  Tweedie denoising at sigma {sigma}: PSNR {p_noisy:.2f} -> {p_den:.2f} dB")
        numbers["digits"]["denoising_psnr"].append(
            {"sigma": sigma, "psnr_noisy_db": p_noisy, "psnr_denoised_db": p_den}
        )

    fig = Figure(figsize=(12, 4), layout="constrained")
    data, held = moons["result"].data, moons["held"].x[:2000]
    scatter_2d(fig.add_subplot(1, 3, 1), data.decode(moons["samples"]), data.decode(held),
               "moons: samples over held-out data")  # fmt: skip
    norm = digits["held"].normalization
    draw_grid(fig.add_subplot(1, 3, 2), to_unit_interval(digits["samples"][:64], norm),
              title="digits: samples")  # fmt: skip
    draw_grid(fig.add_subplot(1, 3, 3), to_unit_interval(digits["held"].x[:64], norm),
              title="digits: test split")  # fmt: skip
    fig.savefig(folder / "quickstart.png", dpi=110)

    numbers["total_s"] = time.perf_counter() - t0
    numbers["total_cpu_s"] = time.process_time() - c0
    numbers["load_average"] = [load0, _load()]
    numbers["torch_threads"] = torch.get_num_threads()
    busy = max(numbers["load_average"]) > (os.cpu_count() or 1)  # NaN: not known, not said
    report(
        f"\ntotal time {numbers['total_s']:.0f} s ({numbers['total_cpu_s']:.0f} CPU-s of this "
        f"process, {numbers['torch_threads']} torch thread(s); load average {load0:.1f} at the "
        f"start, {numbers['load_average'][1]:.1f} at "
        "the end" + (": above the core count, other work slowed this run)" if busy else ")")
    )
    (folder / "report.txt").write_text("\n".join(lines) + "\n")
    (folder / "metrics.json").write_text(json.dumps(numbers, indent=2, default=float) + "\n")
    write_run_record(folder, "quickstart", vars(args) | {"run": None},
                     outputs=["report.txt", "metrics.json", "quickstart.png", "mcmc.png",
                              "moons", "digits"])  # fmt: skip
    print(f"wrote {folder}/quickstart.png, mcmc.png, report.txt, metrics.json; runs in "
          f"{folder}/moons, /digits (likelihood in digits/eval.json)")  # fmt: skip
    return 0
