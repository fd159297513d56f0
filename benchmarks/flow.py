"""Flow matching and reflow against the EDM objective, and the straightness of exact flows.

Run from the repository root::

    nice -n 5 python benchmarks/flow.py          # moons and digits, 15-25 min on 2 busy cores;
                                                 # writes results/flow.md
    python benchmarks/flow.py --quick            # short budgets, prints only
    python benchmarks/flow.py --out FILE         # write the report elsewhere

Part 1 (exact, nothing trained): for Gaussian mixtures, the probability-flow ODE in sigma-space
``dy/dsigma = (y - D(y, sigma)) / sigma`` with the exact denoiser, integrated finely (2000
log-spaced levels), seen in the flow's coordinates ``(x_t = y / (1 + sigma), t)`` from
``t_max = 0.999`` and in EDM's ``(y, sigma / 80)`` from sigma 80. Straightness is Liu et al.
(2023)'s ``S = int_0^1 E||(x_1 - x_0) - dx/dtau||^2 dtau`` (0 for straight paths), also divided
by ``E||x_1 - x_0||^2``; then Euler with the exact denoiser at 1, 2, 4, 8 steps on each
process's own levels (flow: ``t_i = 0.999 (1 - i / N)``, ``Flow(spacing="linspace")``; EDM:
rho = 7), scored by the distance of its endpoint from the fine ODE's endpoint for the same
noise (the coupling error) and the sliced Wasserstein distance to exact samples.

Part 2 (trained): on moons and digits, one MLP per recipe, every recipe trained for the same
process CPU time (``time.process_time``, one thread): EDM (objective ``edm``, EDM
preconditioning), flow matching (``flow_matching``, velocity) with independent and with
minibatch-OT coupling, and 2-rectified flow (reflow of the independent flow-matching model,
Liu et al. 2023: 10,000 pairs drawn by DPM-Solver++(2M) at 35 NFE on the flow levels, then
trained from the teacher's weights for half the budget; its extra CPU time is reported).
Samples by Euler on each model's own levels (EDM's for EDM, ``Flow(spacing="linspace")`` for
the flows) at NFE 1, 2, 4, 10, 20, several sample seeds; sliced Wasserstein (moons) and
Frechet distance in pixel space (digits) against held-out data, beside the floor (training
data in place of samples).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from _common import emit, fmt, machine, run_meta

from scorelab import diffusion
from scorelab.data import load
from scorelab.densities import GaussianMixture
from scorelab.metrics import frechet_distance, sliced_wasserstein
from scorelab.training.config import TrainConfig
from scorelab.training.reflow import PairedDataset, draw_pairs
from scorelab.training.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results" / "flow.md"
SEED = 0
NFES = (1, 2, 4, 10, 20)
EULER_STEPS = (1, 2, 4, 8)
FEW_STEP_FLOW = diffusion.Flow(spacing="linspace")  # t_i = t_max (1 - i / N): Liu et al.'s grid


# -- part 1: exact mixtures ---------------------------------------------------------------
def mixtures() -> dict[str, GaussianMixture]:
    g = torch.Generator().manual_seed(SEED)
    angles = torch.arange(8, dtype=torch.float64) * (2 * torch.pi / 8)
    ring = torch.stack([angles.cos(), angles.sin()], 1) * 1.5
    means16 = torch.randn(4, 16, generator=g, dtype=torch.float64) * 0.7
    return {
        "8-mode ring, d=2 (std 0.1)": GaussianMixture(torch.full((8,), 1 / 8), ring, 0.01),
        "4 components, d=16 (std 0.3)": GaussianMixture(torch.full((4,), 0.25), means16, 0.09),
    }


def fine_path(gm, z: torch.Tensor | None, sigma_start: float, y0: torch.Tensor, levels: int = 2000):
    """Euler on the sigma-space ODE over log-spaced levels from ``sigma_start`` to 1e-4, then 0:
    the levels, the states ``y`` and denoised values ``D`` at each level."""
    sig = torch.logspace(torch.log10(torch.tensor(sigma_start)), -4, levels, dtype=torch.float64)
    sig = torch.cat([sig, sig.new_zeros(1)])
    ys, ds, y = [], [], y0
    for i in range(levels):
        d = gm.denoise(y, sig[i])
        ys.append(y)
        ds.append(d)
        y = torch.lerp(d, y, sig[i + 1] / sig[i])
    return sig[:-1], torch.stack(ys), torch.stack(ds), y


def straightness(tau: torch.Tensor, rate: torch.Tensor, chord: torch.Tensor) -> tuple[float, float]:
    """Liu et al.'s ``int E||chord - rate||^2 dtau`` by the trapezoid rule (``tau`` decreasing),
    and the same divided by ``E||chord||^2``."""
    dev = ((rate - chord) ** 2).sum(-1).mean(-1)  # [levels]
    s = float(torch.trapezoid(dev.flip(0), tau.flip(0)))
    return s, s / float((chord**2).sum(-1).mean())


def exact_part(n: int, draws: int) -> list[str]:
    flow, edm = diffusion.Flow(spacing="linspace"), diffusion.EDM()
    lines = [
        "| mixture | path | S (Liu) | S / E\\|x1-x0\\|^2 | "
        + " | ".join(f"Euler {k}: endpoint err / SW" for k in EULER_STEPS)
        + " |",
        "|---|---|---|---|" + "---|" * len(EULER_STEPS),
    ]
    for name, gm in mixtures().items():
        g = torch.Generator().manual_seed(SEED)
        z = torch.randn(n, gm.dim, generator=g, dtype=torch.float64)
        exact = gm.sample(n, generator=torch.Generator().manual_seed(SEED + 1)).double()
        for label, proc in (("flow, t_max (1 - i/N)", flow), ("EDM, rho 7", edm)):
            y0 = proc.prior_std() * z
            sig, ys, ds, y_end = fine_path(gm, z, proc.sigma_max, y0)
            if proc is flow:  # flow coordinates x_t = y / (1 + sigma), t = sigma / (1 + sigma)
                t = sig / (1 + sig)
                x = ys / (1 + sig)[:, None, None]
                rate = (x - ds) / t[:, None, None]  # dx_t/dt = v
                tau, chord = t / t[0], (x[0] - y_end) / t[0]
                rate = rate * t[0]  # d x / d tau with tau = t / t_max
                chord = chord * t[0]
            else:  # EDM: y over tau = sigma / sigma_max
                tau = sig / sig[0]
                rate = (ys - ds) / sig[:, None, None] * sig[0]
                chord = ys[0] - y_end
            s_abs, s_rel = straightness(tau, rate, chord)
            starts = [
                torch.randn(
                    n, gm.dim, generator=torch.Generator().manual_seed(100 + d), dtype=torch.float64
                )
                * proc.prior_std()
                for d in range(draws)
            ]
            refs = [fine_path(gm, None, proc.sigma_max, y0, 400)[3] for y0 in starts]
            cells = []
            for k in EULER_STEPS:
                errs, sws = [], []
                for y0, ref in zip(starts, refs, strict=True):
                    y = diffusion.euler(gm.denoise, y0, proc.sigmas(k))
                    errs.append(float((y - ref).norm(dim=-1).mean()))
                    sws.append(float(sliced_wasserstein(y, exact, generator=g)))
                cells.append(f"{fmt(statistics.mean(errs))} / {fmt(statistics.mean(sws))}")
            lines.append(
                f"| {name} | {label} | {fmt(s_abs)} | {fmt(s_rel)} | " + " | ".join(cells) + " |"
            )
        floor = float(
            sliced_wasserstein(
                gm.sample(n, generator=torch.Generator().manual_seed(7)), exact, generator=g
            )
        )
        lines.append(
            f"| {name} | exact samples (floor) | | | "
            + " | ".join(f"0 / {fmt(floor)}" for _ in EULER_STEPS)
            + " |"
        )
    return lines


# -- part 2: trained models ---------------------------------------------------------------
def train_for(cfg: TrainConfig, data, cpu_seconds: float, init=None):
    """Train with the library's ``Trainer.train_step`` until ``cpu_seconds`` of process CPU
    time are spent; the EMA model, steps and CPU seconds used."""
    trainer = Trainer(cfg, data)
    if init is not None:
        trainer.model.load_state_dict(init.state_dict())
        trainer.ema.load_state_dict(init.state_dict())
    start = time.process_time()
    while time.process_time() - start < cpu_seconds:
        trainer.train_step()
    used = time.process_time() - start
    model = trainer.ema_model()
    trainer.close()
    return model, trainer.step, used


def metric_fn(name: str):
    if name == "moons":
        return lambda x, ref: float(
            sliced_wasserstein(x, ref, generator=torch.Generator().manual_seed(SEED))
        )
    return lambda x, ref: float(frechet_distance(x.flatten(1).double(), ref.flatten(1).double()))


def trained_part(name: str, budget: float, n: int, draws: int) -> tuple[list[str], list[str]]:
    gen = torch.Generator().manual_seed(SEED)
    if name == "moons":
        data = load("moons", n=10_000, generator=gen)
        ref = load(
            "moons",
            n=n,
            split="test",
            normalization=data.normalization,
            generator=torch.Generator().manual_seed(SEED + 1),
        ).x
        metric_name = "sliced Wasserstein-2"
    else:
        data = load("digits")
        ref = load("digits", split="test", normalization=data.normalization).x
        metric_name = "Frechet distance (pixels)"
    measure = metric_fn(name)
    base = dict(
        data=name,
        steps=10**9,
        batch_size=256,
        seed=SEED,
        device="cpu",
        out=f"/tmp/scorelab-flow-bench-{os.getpid()}",
    )
    recipes = {
        "EDM (edm objective, edm precond)": dict(objective="edm", parameterization="edm"),
        "flow matching (velocity)": dict(objective="flow_matching", parameterization="velocity"),
        "flow matching + OT coupling": dict(
            objective="flow_matching",
            parameterization="velocity",
            objective_kwargs={"coupling": "ot"},
        ),
    }
    models, info = {}, []
    for label, rec in recipes.items():
        cfg = TrainConfig.from_dict({**base, **rec})
        model, steps, used = train_for(cfg, data, budget)
        models[label] = (model, "edm" if rec["objective"] == "edm" else FEW_STEP_FLOW)
        info.append(f"{label}: {steps} steps in {used:.0f} s CPU")
    # 2-rectified flow: pairs from the independent flow-matching model, then fine-tuned on them
    teacher = models["flow matching (velocity)"][0]
    start = time.process_time()
    with torch.no_grad():
        pairs = draw_pairs(
            teacher,
            10_000,
            sampler="dpmpp_2m",
            nfe=35,
            process="flow",
            generator=torch.Generator().manual_seed(SEED),
            progress=False,
        )
    pair_cpu = time.process_time() - start
    paired = PairedDataset(x=pairs, labels=None, normalization=data.normalization, name=name)
    cfg = TrainConfig.from_dict(
        {
            **base,
            "objective": "flow_matching",
            "parameterization": "velocity",
            "objective_kwargs": {"coupling": "paired"},
        }
    )
    student, steps, used = train_for(cfg, paired, budget / 2, init=teacher)
    label = "2-rectified flow (reflow of flow matching)"
    models[label] = (student, FEW_STEP_FLOW)
    info.append(
        f"{label}: {len(pairs)} pairs in {pair_cpu:.0f} s CPU, then {steps} steps in "
        f"{used:.0f} s CPU (total beyond its teacher: {pair_cpu + used:.0f} s)"
    )

    m = min(n, len(data))
    floors = [measure(data.x[torch.randperm(len(data), generator=gen)[:m]], ref)
              for _ in range(draws)]  # fmt: skip
    floor = f"{fmt(statistics.mean(floors))} +- {fmt(statistics.stdev(floors))}"
    lines = [
        f"### {name}: {metric_name}, mean +- std over {draws} sample seeds "
        f"({m} samples vs {len(ref)} held-out; floor {floor})",
        "",
        "| recipe | " + " | ".join(f"NFE {k}" for k in NFES) + " |",
        "|---|" + "---|" * len(NFES),
    ]
    for label, (model, proc) in models.items():
        cells = []
        for nfe in NFES:
            vals = []
            for d in range(draws):
                x = diffusion.sample(
                    model,
                    min(n, len(data)),
                    sampler="euler",
                    nfe=nfe,
                    process=proc,
                    progress=False,
                    generator=torch.Generator().manual_seed(10 + d),
                ).samples
                vals.append(measure(x, ref))
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{fmt(statistics.mean(vals))} +- {fmt(sd)}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| floor (training data as samples) | " + " | ".join(floor for _ in NFES) + " |")
    return lines, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short budgets; print only")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    quick = args.quick
    budgets = {"moons": 8.0, "digits": 8.0} if quick else {"moons": 45.0, "digits": 90.0}
    draws = 2 if quick else 3
    out = None if quick and args.out is None else (args.out or RESULTS)

    body = ["## 1. Exact mixtures: straightness and Euler error (nothing trained)", ""]
    body += exact_part(1000 if quick else 4000, draws)
    body += ["", "## 2. Trained models at equal training CPU time", ""]
    for name in ("moons", "digits"):
        lines, info = trained_part(name, budgets[name], 2000 if name == "moons" else 1000, draws)
        body += [
            f"Budget {budgets[name]:.0f} s CPU per recipe (1 thread): " + "; ".join(info) + ".",
            "",
            *lines,
            "",
        ]
    meta = run_meta(quick, start, load_start)
    head = [
        "# Flow matching, OT coupling and reflow against EDM",
        "",
        f"Generated by `python benchmarks/flow.py{meta['args']}` on {meta['date']} "
        f"({meta['minutes']:.1f} min in all).",
        "",
        f"- Machine: {machine()}; load average (uptime) {meta['load_start']:.2f} at the start "
        f"and {meta['load_end']:.2f} at the end (other processes shared the machine; training "
        "budgets are process CPU time, which load does not shrink).",
        f"- Versions: torch {torch.__version__}. One training seed per recipe (0); spreads are "
        "over sample seeds only.",
        "",
    ]
    emit("\n".join(head + body) + "\n", out)


if __name__ == "__main__":
    main()
