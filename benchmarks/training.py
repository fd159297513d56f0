"""Training throughput on CPU: scorelab's digits U-Net against diffusers' UNet2DModel.

Run from the repository root (diffusers is a benchmark-only peer, ``pip install --no-deps
diffusers`` plus huggingface-hub, regex, safetensors, never another torch; a missing diffusers
is skipped with a message and only the scorelab rows are measured)::

    python benchmarks/training.py            # two model sizes, batch 64 and 128, 1 and 2
                                             # threads (2-8 min); writes results/training.md
    python benchmarks/training.py --quick    # small pair, batch 64, few windows; prints only
    python benchmarks/training.py --out FILE # write the report elsewhere

Both libraries train a DDPM noise predictor (T = 1000, linear betas) on the bundled 8x8 digits
([1437, 1, 8, 8] in [-1, 1]) in float32, with AdamW, minibatches drawn with replacement from
the same data by generators with the same seed. Each pair of U-Nets has the same layout (two
resolution levels, two residual blocks per level, scale-shift conditioning, no attention) and
within 1.3% the same parameter count. Examples per second is the median over timed windows
after warm-up; the models of one (size, batch, threads) cell take turns window by window, so
the ratios compare them under the same machine load; examples per second of process CPU time
is reported beside it, as the steadier measure on a shared machine. A torch.profiler pass then
splits a step into phases and operator kinds.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from _common import emit, fmt, machine, run_meta, torch_threads, versions
from _peers import load_diffusers
from torch import Tensor, nn
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile, record_function

import scorelab
from scorelab.data import load
from scorelab.diffusion.objectives import ddpm_loss
from scorelab.nets import build, num_parameters
from scorelab.training.config import TrainConfig
from scorelab.training.ema import PowerEMA, power_ema_sigma_rel
from scorelab.training.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results" / "training.md"
SEED = 0
T = 1000  # DDPM steps, linear beta schedule 1e-4 .. 0.02 in both libraries
LR = 1e-3
PHASES = ("forward", "backward", "optimizer")
Step = Callable[[], None]

# row labels; MATCHED is the peer every ratio is taken against
RECIPE = "scorelab DDPM step"
TRAINER = "scorelab Trainer.train_step"
CHANNELS_LAST = "scorelab DDPM step, channels_last"
MATCHED = "diffusers UNet2DModel, matched"
DEFAULT = "diffusers UNet2DModel, default blocks"


@dataclass(frozen=True)
class Pair:
    """A scorelab ``UNet`` and a diffusers ``UNet2DModel`` of the same layout and size."""

    name: str
    scorelab: dict[str, Any]  # UNet keyword arguments
    widths: tuple[int, int]  # diffusers block_out_channels


def diffusers_kwargs(widths: tuple[int, int], default_blocks: bool = False) -> dict[str, Any]:
    """UNet2DModel for 8x8x1 images, as scorelab's U-Net: no attention, scale-shift conditioning.

    ``default_blocks``: diffusers' own defaults for the rest (self-attention in the middle
    block, additive time conditioning), as the usual small-UNet2DModel recipe builds it.
    """
    return dict(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=widths,
        layers_per_block=2,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        add_attention=default_blocks,
        resnet_time_scale_shift="default" if default_blocks else "scale_shift",
    )


PAIRS = (
    Pair("small", dict(base_channels=32, channel_mult=(1, 2), emb_dim=128), (32, 64)),
    # diffusers' time embedding is 4 x the first width; scorelab's emb_dim follows suit
    Pair("large", dict(base_channels=64, channel_mult=(1, 2), emb_dim=256), (64, 128)),
)


@dataclass(frozen=True)
class Run:
    """Which models a thread count is measured for, and with how many timed rounds."""

    threads: int
    models: tuple[str, ...]
    windows: int  # timed rounds
    budget_s: float  # no new round starts once the cell has run this long


ALL = (RECIPE, TRAINER, CHANNELS_LAST, MATCHED, DEFAULT)
CORE = (RECIPE, TRAINER, MATCHED)


@dataclass
class Row:
    """Examples per second of one model in one (pair, batch, threads) cell, per timed window."""

    pair: str
    model: str
    params: int
    batch: int
    threads: int
    rates: list[float]  # examples per second of wall-clock time
    cpu_rates: list[float]  # examples per second of this process's CPU time

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu_rate(self) -> float:
        return statistics.median(self.cpu_rates)


# -- training steps: each factory returns a closure doing one optimizer step, and the model --


def adamw(model: nn.Module) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)


def minibatch(data: Tensor, batch: int, g: torch.Generator) -> Tensor:
    return data[torch.randint(len(data), (batch,), generator=g)]


def optimize(opt: torch.optim.Optimizer, loss: Tensor) -> None:
    with record_function("backward"):
        opt.zero_grad(set_to_none=True)
        loss.backward()
    with record_function("optimizer"):
        opt.step()


def scorelab_step(
    pair: Pair, data: Tensor, batch: int, channels_last: bool = False
) -> tuple[Step, nn.Module]:
    """``EpsDenoiser(UNet)`` + ``ddpm_loss`` + AdamW: the DDPM recipe through scorelab."""
    model = build("unet", "eps", **pair.scorelab, seed=SEED)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        data = data.contiguous(memory_format=torch.channels_last)
    opt, g = adamw(model), torch.Generator().manual_seed(SEED)

    def step() -> None:
        with record_function("forward"):
            loss = ddpm_loss(model, minibatch(data, batch, g), T=T, generator=g)
        optimize(opt, loss)

    return step, model


def make_trainer(pair: Pair, data: Any, batch: int, out: str) -> Trainer:
    cfg = TrainConfig(
        data="digits",
        objective="ddpm",
        objective_kwargs={"T": T},
        net="unet",
        parameterization="eps",
        net_kwargs=dict(pair.scorelab),
        batch_size=batch,
        lr=LR,
        seed=SEED,
        device="cpu",
        out=out,
    )
    return Trainer(cfg, data=data)


def trainer_step(pair: Pair, data: Any, batch: int, out: str) -> tuple[Step, nn.Module]:
    """scorelab's own ``Trainer.train_step``: the recipe plus lr warm-up, clipping and EMA."""
    trainer = make_trainer(pair, data, batch, out)
    return trainer.train_step, trainer.model


def diffusers_step(
    diffusers: ModuleType, pair: Pair, data: Tensor, batch: int, default_blocks: bool = False
) -> tuple[Step, nn.Module]:
    """The standard diffusers DDPM step: add_noise, ``model(noisy, t).sample``, MSE on noise."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = diffusers.UNet2DModel(**diffusers_kwargs(pair.widths, default_blocks))
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=T)
    opt, g = adamw(model), torch.Generator().manual_seed(SEED)

    def step() -> None:
        with record_function("forward"):
            x = minibatch(data, batch, g)
            noise = torch.randn(x.shape, generator=g)
            t = torch.randint(0, T, (batch,), generator=g)
            pred = model(scheduler.add_noise(x, noise, t), t).sample
            loss = F.mse_loss(pred, noise)
        optimize(opt, loss)

    return step, model


def make_steps(
    pair: Pair, dataset: Any, batch: int, diffusers: ModuleType | None, out: str
) -> dict[str, tuple[Step, nn.Module]]:
    """Every model of a cell; the diffusers rows only when diffusers is installed."""
    x = dataset.x
    steps = {
        RECIPE: scorelab_step(pair, x, batch),
        TRAINER: trainer_step(pair, dataset, batch, out),
        CHANNELS_LAST: scorelab_step(pair, x, batch, channels_last=True),
    }
    if diffusers is not None:
        steps[MATCHED] = diffusers_step(diffusers, pair, x, batch)
        steps[DEFAULT] = diffusers_step(diffusers, pair, x, batch, default_blocks=True)
    return steps


# -- timing -------------------------------------------------------------------------------------


def seconds_per_step(step: Step, n: int) -> float:
    """Run ``n`` steps; the mean time of all but the first (``n >= 2``)."""
    step()
    start = time.perf_counter()
    for _ in range(n - 1):
        step()
    return (time.perf_counter() - start) / (n - 1)


def timed_window(step: Step, n: int, batch: int) -> tuple[float, float]:
    """Examples per second of wall-clock time and of process CPU time over ``n`` steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return n * batch / (time.perf_counter() - wall), n * batch / (time.process_time() - cpu)


def measure_cell(
    steps: dict[str, Step], batch: int, run: Run, plan: dict[str, Any]
) -> dict[str, list[tuple[float, float]]]:
    """Warm up every model, then up to ``run.windows`` rounds of one window per model, the
    order rotated each round; a window is as many steps as fill ``plan["window_s"]`` seconds.
    No round starts after ``run.budget_s`` seconds (2-thread cells can stall for minutes)."""
    names = [name for name in steps if name in run.models]
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    start = time.perf_counter()
    with torch_threads(run.threads):
        per_window = {
            name: max(1, round(plan["window_s"] / seconds_per_step(steps[name], plan["warmup"])))
            for name in names
        }
        for r in range(run.windows):
            if r and time.perf_counter() - start > run.budget_s:
                break
            for name in names[r % len(names) :] + names[: r % len(names)]:
                rates[name].append(timed_window(steps[name], per_window[name], batch))
    return rates


def measure(
    dataset: Any, diffusers: ModuleType | None, plan: dict[str, Any], out: str
) -> list[Row]:
    """Every (pair, batch, threads) cell of ``plan``; prints each cell as it is done."""
    rows = []
    for pair in plan["pairs"]:
        for batch in plan["batches"]:
            built = make_steps(pair, dataset, batch, diffusers, out)
            steps = {name: fn for name, (fn, _) in built.items()}
            for run in plan["runs"]:
                load0, start = os.getloadavg()[0], time.perf_counter()
                rates = measure_cell(steps, batch, run, plan)
                for name, found in rates.items():
                    wall, cpu = (list(v) for v in zip(*found, strict=True))
                    params = num_parameters(built[name][1])
                    rows.append(Row(pair.name, name, params, batch, run.threads, wall, cpu))
                shown = ", ".join(f"{r.model}: {fmt(r.rate)}" for r in rows[-len(rates) :])
                print(
                    f"{pair.name} batch {batch} threads {run.threads} (load {load0:.1f} -> "
                    f"{os.getloadavg()[0]:.1f}, {time.perf_counter() - start:.0f} s): {shown} "
                    "examples/s"
                )
    return rows


# -- profile ------------------------------------------------------------------------------------

OP_KINDS = {
    "convolution backward": ("convolution_backward",),
    "convolution forward": ("mkldnn_convolution", "aten::convolution", "aten::_convolution"),
    "group norm": ("group_norm",),
    "SiLU": ("silu",),
    "linear (time embedding)": ("aten::addmm", "aten::mm"),
}


def op_kind(name: str) -> str:
    for kind, keys in OP_KINDS.items():
        if any(k in name for k in keys):
            return kind
    return "other ops"


def profile_step(step: Step, n: int) -> dict[str, float]:
    """Milliseconds per step over ``n`` steps: the phases (inclusive) and the operator kinds
    (self time)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    out: dict[str, float] = {p: 0.0 for p in (*PHASES, *OP_KINDS, "other ops", "total")}
    for event in prof.key_averages():
        if event.key in PHASES:
            out[event.key] += event.cpu_time_total / 1e3 / n
        elif not event.key.startswith(("Optimizer.", "autograd::engine")):
            out[op_kind(event.key)] += event.self_cpu_time_total / 1e3 / n
    out["total"] = sum(out[p] for p in PHASES)
    return out


def profile_rounds(steps: dict[str, Step], n: int, rounds: int) -> dict[str, dict[str, float]]:
    """``rounds`` profiles of ``n`` steps per model, taking turns; the median of each entry."""
    for step in steps.values():
        step()  # not profiled: the first step after building allocates the optimizer state
    found: dict[str, list[dict[str, float]]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            found[name].append(profile_step(step, n))
    return {
        name: {key: statistics.median(d[key] for d in each) for key in each[0]}
        for name, each in found.items()
    }


def trainer_extras(pair: Pair, dataset: Any, batch: int, out: str, n: int) -> dict[str, float]:
    """Milliseconds per call of what ``Trainer.train_step`` adds to the recipe."""
    trainer = make_trainer(pair, dataset, batch, out)
    trainer.train_step()  # gradients exist from here on
    params = list(trainer.model.parameters())
    calls: dict[str, Callable[[], Any]] = {
        "EMA update": lambda: trainer.ema.update(trainer.model, trainer.step),
        "gradient clipping": lambda: torch.nn.utils.clip_grad_norm_(params, 1.0),
    }
    return {name: 1e3 * seconds_per_step(fn, n + 1) for name, fn in calls.items()}


def run_profile(
    dataset: Any, diffusers: ModuleType | None, plan: dict[str, Any], out: str
) -> dict[str, dict[str, float]]:
    """Profile the small pair at batch 64 and one thread; time the Trainer's additions."""
    pair, batch, n = PAIRS[0], 64, plan["profile_steps"]
    steps = {RECIPE: scorelab_step(pair, dataset.x, batch)[0]}
    if diffusers is not None:
        steps[MATCHED] = diffusers_step(diffusers, pair, dataset.x, batch)[0]
    with torch_threads(1):
        found = profile_rounds(steps, n, plan["profile_rounds"])
        found[TRAINER] = trainer_extras(pair, dataset, batch, out, 10 * n)
    return found


# -- report -------------------------------------------------------------------------------------


def find(rows: list[Row], pair: str, model: str, batch: int, threads: int) -> Row | None:
    return next(
        (r for r in rows if (r.pair, r.model, r.batch, r.threads) == (pair, model, batch, threads)),
        None,
    )


def peer_of(rows: list[Row], row: Row) -> Row | None:
    return find(rows, row.pair, MATCHED, row.batch, row.threads)


def ratio(rows: list[Row], row: Row, cpu: bool = False) -> float:
    """This row's median examples/s (of wall or CPU time) over the matched peer's, same cell."""
    peer = peer_of(rows, row)
    if peer is None:
        return math.nan
    return row.cpu_rate / peer.cpu_rate if cpu else row.rate / peer.rate


def round_ratios(rows: list[Row], row: Row) -> str:
    """Range over rounds of the window-by-window ratio (windows of one round ran back to back)."""
    peer = peer_of(rows, row)
    if peer is None or row is peer:
        return ""
    each = [a / b for a, b in zip(row.rates, peer.rates, strict=True)]
    return f"{min(each):.2f}-{max(each):.2f} ({len(each)})"


def table(rows: list[Row]) -> str:
    lines = [
        "| pair | model | params | batch | threads | examples/s | ratio to peer | per-round "
        "| examples/CPU-s | CPU ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.pair} | {r.model} | {r.params:,} | {r.batch} | {r.threads} | {fmt(r.rate)} "
            f"| {fmt(ratio(rows, r))} | {round_ratios(rows, r)} | {fmt(r.cpu_rate)} "
            f"| {fmt(ratio(rows, r, cpu=True))} |"
        )
    return "\n".join(lines)


def ratio_summary(rows: list[Row], model: str, threads: int, cpu: bool = False) -> str:
    """Ratio of ``model`` to the matched peer in every cell with ``threads``, and the median."""
    cells = [(r, ratio(rows, r, cpu)) for r in rows if (r.model, r.threads) == (model, threads)]
    cells = [(r, q) for r, q in cells if math.isfinite(q)]
    if not cells:
        return "not measured (no diffusers)"
    shown = ", ".join(f"{r.pair} batch {r.batch}: {q:.2f}" for r, q in cells)
    at_least = sum(q >= 1 for _, q in cells)
    median = statistics.median(q for _, q in cells)
    return f"median {median:.2f}, {at_least} of {len(cells)} at 1 or above ({shown})"


def versus(rows: list[Row], model: str, base: str, threads: int = 1) -> str:
    """Median and range of ``model`` / ``base`` over the cells with ``threads`` that have both."""
    q = []
    for r in rows:
        if (r.model, r.threads) == (model, threads):
            b = find(rows, r.pair, base, r.batch, threads)
            q += [r.rate / b.rate] if b else []
    if not q:
        return "-"
    cells = f"{len(q)} cell{'s' * (len(q) != 1)}"
    return f"{statistics.median(q):.2f} (range {min(q):.2f}-{max(q):.2f}, {cells})"


def thread_speedup(rows: list[Row], model: str) -> str:
    q = []
    for r in rows:
        if r.model == model and r.threads == 2 and (b := find(rows, r.pair, model, r.batch, 1)):
            q.append(r.rate / b.rate)
    return f"{min(q):.2f}-{max(q):.2f}" if q else "-"


def profile_table(found: dict[str, dict[str, float]]) -> str:
    models = [m for m in (RECIPE, MATCHED) if m in found]
    lines = [
        "| ms per step | " + " | ".join(models) + " |",
        "|---|" + "---:|" * len(models),
    ]
    for key in ("total", *PHASES, *OP_KINDS, "other ops"):
        label = f"phase: {key}" if key in PHASES else key
        cells = " | ".join(f"{found[m][key]:.1f}" for m in models)
        lines.append(f"| {label} | {cells} |")
    return "\n".join(lines)


def conv_share(found: dict[str, float]) -> float:
    ops = sum(found[k] for k in (*OP_KINDS, "other ops"))
    conv = found["convolution forward"] + found["convolution backward"]
    return conv / ops if ops else math.nan


def params_line(rows: list[Row]) -> str:
    out = []
    for pair in dict.fromkeys(r.pair for r in rows):
        counts = {r.model: r.params for r in rows if r.pair == pair}
        ours, peer = counts[RECIPE], counts.get(MATCHED)
        shown = f"{peer:,} ({100 * (ours / peer - 1):+.1f}%)" if peer else "not measured"
        out.append(f"{pair}: scorelab {ours:,}, diffusers matched {shown}")
    return "; ".join(out)


def aim(rows: list[Row]) -> str:
    """Whether scorelab's step is at least as fast as the peer: 1-thread medians, wall and CPU."""
    q = [
        statistics.median(qs)
        for cpu in (False, True)
        if (qs := [ratio(rows, r, cpu) for r in rows if (r.model, r.threads) == (RECIPE, 1)])
        and all(map(math.isfinite, qs))
    ]
    if len(q) < 2:
        return "- Aim (at least as fast as the peer at equal size): not measured (no diffusers)."
    verdict = "met" if q[1] >= 1 else "parity within 3%" if q[1] >= 0.97 else "not met"
    return (
        f"- Aim (scorelab at least as fast as the peer at equal parameter count), judged at 1 "
        f"thread by CPU time, the steadier measure: {verdict} (median ratio over cells "
        f"{q[1]:.2f}; by wall-clock time {q[0]:.2f})."
    )


def notes(rows: list[Row], found: dict[str, dict[str, float]]) -> str:
    extras, recipe = found[TRAINER], found[RECIPE]
    peer_conv = f"{100 * conv_share(found[MATCHED]):.0f}%" if MATCHED in found else "-"
    lines = [
        aim(rows),
        f"- Parameter counts: {params_line(rows)}.",
        f"- scorelab DDPM step / diffusers, 1 thread, wall-clock: "
        f"{ratio_summary(rows, RECIPE, 1)}.",
        f"- The same by CPU time (steadier on a shared machine): "
        f"{ratio_summary(rows, RECIPE, 1, cpu=True)}.",
        f"- `Trainer.train_step` / diffusers, 1 thread: {ratio_summary(rows, TRAINER, 1)}.",
        f"- 2 threads, scorelab DDPM step / diffusers: {ratio_summary(rows, RECIPE, 2)}; "
        f"`Trainer.train_step` / diffusers: {ratio_summary(rows, TRAINER, 2)}.",
        f"- `Trainer.train_step` / the bare scorelab step (1 thread): "
        f"{versus(rows, TRAINER, RECIPE)}; timed apart, its EMA update takes "
        f"{extras['EMA update']:.1f} ms and gradient clipping {extras['gradient clipping']:.1f} "
        f"ms per step, against a {recipe['total']:.0f} ms profiled step (small, batch 64).",
        f"- channels_last / the default memory format (scorelab step, 1 thread): "
        f"{versus(rows, CHANNELS_LAST, RECIPE)}.",
        f"- diffusers with its default blocks (mid-block attention, additive conditioning, "
        f"6% fewer parameters) / diffusers matched (1 thread): {versus(rows, DEFAULT, MATCHED)}.",
        f"- 2 threads / 1 thread, same cell: scorelab step {thread_speedup(rows, RECIPE)}, "
        f"diffusers {thread_speedup(rows, MATCHED)} (range over cells).",
        f"- Convolutions (forward and backward) take {100 * conv_share(recipe):.0f}% of "
        f"scorelab's operator time and {peer_conv} of diffusers' in the profile.",
    ]
    return "\n".join(lines)


METHOD = """\
- **Data.** `scorelab.data.load("digits")`: 1437 images [1, 8, 8] in [-1, 1], float32. Every
  step draws its minibatch with replacement (`torch.randint`) from a generator seeded {seed};
  every model is initialized from seed {seed}.
- **Models.** Each pair shares one layout: 3x3 input conv; two levels (8x8, 4x4) of two
  residual blocks (GroupNorm(8), SiLU, 3x3 conv; the time embedding as a per-channel scale and
  shift after the second GroupNorm), a strided-conv downsample; a middle of two residual blocks;
  the mirrored decoder (three blocks per level on concatenated skips, nearest + conv upsample);
  GroupNorm, SiLU, 3x3 output conv; a 2-layer time-embedding MLP. scorelab: `build("unet",
  "eps", base_channels=c, channel_mult=(1, 2), num_res_blocks=2, emb_dim=4c)` (an `EpsDenoiser`
  around `UNet`). diffusers: `UNet2DModel(sample_size=8, in/out_channels=1,
  block_out_channels=(c, 2c), layers_per_block=2, DownBlock2D/UpBlock2D x2, norm_num_groups=8,
  add_attention=False, resnet_time_scale_shift="scale_shift")`, c = 32 (small) and 64 (large).
  The only difference in parameters is the first time-embedding layer: scorelab's input is a
  4c-wide random Fourier embedding of log(sigma)/4, diffusers' a c-wide sinusoidal embedding of
  the integer timestep. "default blocks" is the same UNet2DModel with diffusers' defaults
  `add_attention=True` (one self-attention layer in the middle block) and additive time
  conditioning, as small-UNet2DModel recipes usually build it.
- **Steps.** diffusers: `DDPMScheduler(num_train_timesteps={T})` (linear betas),
  `t ~ randint(0, {T})`, `noisy = scheduler.add_noise(x, noise, t)`,
  `F.mse_loss(model(noisy, t).sample, noise)`. scorelab "DDPM step":
  `ddpm_loss(model, x, T={T}, schedule="linear")`, the same noise-prediction loss in
  sigma-space. Both then `zero_grad`, `backward`, `AdamW(lr={lr}, weight_decay=0).step()`.
  scorelab "Trainer.train_step" is the library's own step (`Trainer(TrainConfig(net="unet",
  parameterization="eps", objective="ddpm", ...), data)`): the same, plus learning-rate warm-up,
  the finiteness check of the loss, gradient-norm clipping at 1.0 and an EMA update of the
  weights. "channels_last" is the scorelab DDPM step with model and data in
  `torch.channels_last` memory format (no change to `src/`).
- **Timing.** float32, CPU. Per cell (pair, batch, threads): {warmup} warm-up steps per model
  (the time of the last sets the window length), then rounds in which every model runs one
  timed window (as many steps as fill about {window_s} s, at least one); the order of the
  models rotates each round. {runs} "examples/s" is the median over windows; "ratio to peer"
  is that median over the matched diffusers model's median in the same cell (above 1 favours
  the row); "per-round" is the range over rounds of the window-by-window ratio (in brackets,
  the number of rounds), a measure of the noise from the shared machine. "examples/CPU-s"
  and "CPU ratio" are the same with the process's CPU time (`time.process_time`) in place of
  wall-clock time: they leave out the time the process waited for a core.
- **Profile.** torch.profiler, small pair, batch 64, 1 thread: after one unprofiled step,
  {profile_rounds} rounds in which each model is profiled over {profile_steps} steps in turn;
  the table gives the median over rounds, in ms per step. The phases are `record_function`
  ranges in the step (forward: minibatch, noising, network, loss; backward: `zero_grad` and
  `loss.backward()`; optimizer: `AdamW.step`); operator kinds are self CPU times grouped by
  name. Profiling adds overhead, so the totals exceed the timed steps. The Trainer's additions
  are timed apart (mean of {extras} calls of `EMA.update` and `clip_grad_norm_` on its model)."""


WHY = """\
Where the time goes: the profile splits a step the same way for both libraries. The bulk of the
operator time is oneDNN convolution, about two thirds of it in the backward pass; GroupNorm,
SiLU, the time-embedding MLP, the noising and AdamW's foreach updates share the rest. The two
networks run the same kernels on tensors of the same shapes, so at matched layout and size their
cost differs only by what the code around the network adds, and that is small on both sides:
scorelab's `ddpm_loss` rebuilds the 1000-entry float64 schedule and validates sigma at every
call, and `EpsDenoiser` adds a handful of elementwise operations on [batch, 1, 8, 8] tensors
(tens of microseconds against a step of 150 ms or more); diffusers applies SiLU to
the embedding in every block and divides each block's output by `output_scale_factor`. Gaps of
a few percent between the rows of one cell are therefore within the noise of this shared
machine (the "per-round" column); the CPU-time columns, which leave out the time the process
waited for a core, are the steadier measure. The Trainer's additions (EMA, clipping, the
finiteness check of the loss) cost about 1% of a step, below that noise.

Two threads: every convolution splits its work over an OpenMP team that meets at a barrier, and
when another process holds one of the two cores the team waits. On this shared machine (load
averages between about 1.5 and 6 during the runs made while writing this script) the 2-thread
rows swing from many times slower to about twice as fast as one thread, depending on what else
ran during that cell; their ratios are the least reliable numbers here.

What would make scorelab faster is what makes any eager PyTorch U-Net faster on CPU; the profile
shows nothing scorelab-specific to remove. `torch.compile` of the network (`model.net =
torch.compile(model.net)`, checked separately on this machine for the small pair, batch 64, one
thread: about 130 s of compilation under load, then roughly 8% more examples/s in one run) pays
off only for long runs and is not part of this script. Larger batches give each convolution call
more work, and one intra-op thread avoids the barrier stalls on a shared machine. The one lever
measured here that scorelab could adopt itself is channels_last memory format, which oneDNN's
convolutions prefer: the "channels_last" line above gives this run's gain, and in each of the
full runs made while writing this script its median over the 1-thread cells was 4-10%. A user
gets it today with `model.to(memory_format=torch.channels_last)` and channels_last data;
`Trainer` could do the same for U-Nets on CPU (a change to `src/` that this benchmark does not
make)."""


def runs_text(runs: tuple[Run, ...]) -> str:
    """``torch.set_num_threads(n)``: which models, how many rounds, one sentence per run."""
    return " ".join(
        f"`torch.set_num_threads({r.threads})`: "
        + ("all five models" if r.models == ALL else ", ".join(f'"{m}"' for m in r.models))
        + f", {r.windows} round{'s' * (r.windows != 1)} (none begun after {r.budget_s:g} s)."
        for r in runs
    )


def report(rows: list[Row], found: dict, peers: dict[str, ModuleType], meta: dict) -> str:
    plan = meta["plan"]
    return "\n".join(
        [
            "# Training throughput: scorelab's U-Net vs diffusers' UNet2DModel on CPU",
            "",
            f"Generated by `python benchmarks/training.py{meta['args']}` on {meta['date']} "
            f"({meta['minutes']:.1f} min in all).",
            "",
            f"- Machine: {machine()}; load average {meta['load_start']:.2f} at the start and "
            f"{meta['load_end']:.2f} at the end (other processes shared the machine, so timings "
            "vary from run to run; compare within a cell, whose models took turns).",
            f"- Versions: {versions(peers, ('diffusers',))}; scorelab {scorelab.__version__} "
            f"from `{Path(scorelab.__file__).parent}`.",
            "",
            "## How it was measured",
            "",
            METHOD.format(
                seed=SEED,
                T=T,
                lr=LR,
                warmup=plan["warmup"],
                runs=runs_text(plan["runs"]),
                window_s=plan["window_s"],
                profile_steps=plan["profile_steps"],
                profile_rounds=plan["profile_rounds"],
                extras=10 * plan["profile_steps"],
            ),
            "",
            "## Results",
            "",
            table(rows),
            "",
            "## Profile (small pair, batch 64, 1 thread)",
            "",
            profile_table(found),
            "",
            "## What the numbers mean",
            "",
            notes(rows, found),
            "",
            WHY,
        ]
    )


# Two threads on the shared 2-core machine are several times slower than one (see the results),
# so that setting gets the three main rows and fewer rounds to keep the run near 8 minutes.
PLANS: dict[bool, dict[str, Any]] = {
    False: dict(
        pairs=PAIRS,
        batches=(64, 128),
        runs=(Run(1, ALL, 5, 120), Run(2, CORE, 3, 60)),
        warmup=2,
        window_s=0.6,
        profile_steps=2,
        profile_rounds=3,
    ),
    True: dict(
        pairs=PAIRS[:1],
        batches=(64,),
        runs=(Run(1, ALL, 2, 30), Run(2, CORE, 1, 30)),
        warmup=2,
        window_s=0.2,
        profile_steps=1,
        profile_rounds=1,
    ),
}


# == Quality against training CPU-seconds (issue 21) ===========================================
#
# Each cell trains one recipe for one number of steps in its own process (one torch thread), so
# its CPU-seconds (``time.process_time``) are its own whatever else runs; then it samples
# ``draws`` sets of ``n`` digits and scores each by the Frechet distance of classifier features
# against the test split, beside the floor (as many training images as samples, same reference).

QUALITY_MARK = "<!-- quality against CPU-seconds: written by benchmarks/training.py --quality -->"
CLASSIFIER_SEED = 12345  # the feature classifier's: independent of every recipe's seed
SAMPLE_SEED = 1000  # draw d uses generator seed SAMPLE_SEED + d
SAMPLER = dict(sampler="heun", nfe=35, process="edm")  # one sampler for every row
OLD = "old quickstart recipe"
NEW = "new quickstart recipe"
UNCOND = "new recipe without labels"  # the quickstart's recipe before it became conditional
PEER = "diffusers UNet2DModel, DDPM recipe"
OLD_NET = {"base_channels": 16, "num_res_blocks": 1}


def old_config(steps: int, out: str) -> TrainConfig:
    """The quickstart's digits run before issue 21 (``TrainConfig`` defaults otherwise)."""
    return TrainConfig(data="digits", net="unet", steps=steps, batch_size=64, lr=1e-3, seed=SEED,
                       device="cpu", out=out, net_kwargs=dict(OLD_NET))  # fmt: skip


def new_config(steps: int, out: str) -> TrainConfig:
    """The quickstart's digits recipe now (``scorelab.cli.quickstart.digits_config``)."""
    from scorelab.cli.quickstart import digits_config

    return digits_config(SEED, out, steps=steps, device="cpu")


@dataclass(frozen=True)
class Recipe:
    """A row: a training recipe and the step counts it is measured at."""

    name: str
    steps: tuple[int, ...]
    config: Callable[[int, str], TrainConfig] | None  # None: the diffusers peer
    note: str  # what differs from the old recipe, and whether the new recipe keeps it
    draws: int  # sample draws per cell (the headline rows get the full count)
    one_run: bool = False  # schedule independent of the length: one run, read at each count
    emas: tuple[float, ...] = ()  # power-function EMA gammas tracked beside the trainer's EMA
    prior_check: bool = False  # also sample by diffusion.sample's defaults, zero vs data prior
    sampling_checks: bool = False  # conditional: guidance, the unconditional branch, churn


def ablated_config(steps: int, out: str, changes: dict[str, Any]) -> TrainConfig:
    """The old recipe with ``changes`` (``TrainConfig`` fields; ``net_kwargs`` merged)."""
    cfg = old_config(steps, out).to_dict()
    for key, value in changes.items():
        cfg[key] = {**cfg[key], **value} if key == "net_kwargs" else value
    return TrainConfig.from_dict(cfg)


def ablation(changes: dict[str, Any]) -> Callable[[int, str], TrainConfig]:
    """``ablated_config`` with ``changes`` bound (a partial: worker processes unpickle it)."""
    return functools.partial(ablated_config, changes=changes)


def new_ablated_config(steps: int, out: str, changes: dict[str, Any]) -> TrainConfig:
    """The new recipe with ``changes`` (``TrainConfig`` fields; ``net_kwargs`` and
    ``objective_kwargs`` merged)."""
    cfg = new_config(steps, out).to_dict()
    for key, value in changes.items():
        merge = key in ("net_kwargs", "objective_kwargs")
        cfg[key] = {**(cfg[key] or {}), **value} if merge else value
    return TrainConfig.from_dict(cfg)


def new_ablation(changes: dict[str, Any]) -> Callable[[int, str], TrainConfig]:
    """``new_ablated_config`` with ``changes`` bound (picklable for the worker processes)."""
    return functools.partial(new_ablated_config, changes=changes)


EMA_GAMMAS = (2.5, 5.0, 16.0)  # power-function EMAs read from the new recipe's run (EDM2)


# third round (``--ablate --net``): the network for 8x8 inputs, regularization, the loss's
# sigma_data and gradient clipping, each over several training seeds. Step counts keep the
# training CPU-seconds about equal to the new recipe's (1000 steps of ~54 ms, one thread),
# from ms/step measured for each network on this machine (base 24: 78; base 32: 127;
# num_res_blocks 2: 65; one level: 25; one level, base 32: 53; attention at 4x4: 51).
NET_ROWS: tuple[tuple[str, dict[str, Any], int], ...] = (
    ("new + base_channels 24, 700 steps (about equal CPU-s)",
     {"net_kwargs": {"base_channels": 24}}, 700),
    ("new + base_channels 24 (1.45x CPU-s)", {"net_kwargs": {"base_channels": 24}}, 1000),
    ("new + base_channels 32, 450 steps (about equal CPU-s)",
     {"net_kwargs": {"base_channels": 32}}, 450),
    ("new + num_res_blocks 2, 850 steps (about equal CPU-s)",
     {"net_kwargs": {"num_res_blocks": 2}}, 850),
    ("new + one level (channel_mult (1,)), 2000 steps (about equal CPU-s)",
     {"net_kwargs": {"channel_mult": [1]}}, 2000),
    ("new + one level, base_channels 32 (about equal CPU-s)",
     {"net_kwargs": {"channel_mult": [1], "base_channels": 32}}, 1000),
    ("new + attention at 4x4", {"net_kwargs": {"attention_resolutions": [2]}}, 1000),
    ("new + dropout 0.1", {"net_kwargs": {"dropout": 0.1}}, 1000),
    ("new + sigma_data 0.5 (net and loss; the data's sd is 0.75)",
     {"net_kwargs": {"sigma_data": 0.5}, "objective_kwargs": {"sigma_data": 0.5}}, 1000),
    ("new + no gradient clipping", {"grad_clip": 0.0}, 1000),
    # one level (8x8 only) scored FD 14-17 in the screen: the 4x4 level's receptive field
    # matters, so a third level (2x2; the middle block moves there) is tried at 1000 steps
    ("new + three levels (channel_mult (1, 2, 2))", {"net_kwargs": {"channel_mult": [1, 2, 2]}},
     1000),
    ("new + three levels (channel_mult (1, 2, 4))", {"net_kwargs": {"channel_mult": [1, 2, 4]}},
     1000),
    # the two that helped at seeds 0 and 1 of the screen, together
    ("new + attention at 4x4 + dropout 0.1",
     {"net_kwargs": {"attention_resolutions": [2], "dropout": 0.1}}, 1000),
    # what the rest of the quickstart's 2-minute budget would buy: 1.5x the training CPU-s
    ("new, 1500 steps (1.5x CPU-s)", {}, 1500),
)  # fmt: skip


def seeded_name(name: str, seed: int) -> str:
    """A row's name at training seed ``seed``: the name itself at seed 0 (as ``NEW``), else
    ``name, training seed k`` (as ``new, training seed 1``)."""
    return name if seed == 0 else f"{name}, training seed {seed}"


def seed_of(cell: str) -> int:
    """The training seed of a row or read-out, from its name (``seeded_name``)."""
    m = re.search(r", training seed (\d+)", cell)
    return int(m.group(1)) if m else 0


def net_rows(draws: int, seeds: tuple[int, ...], full: tuple[str, ...],
             full_seeds: tuple[int, ...] = (0, 1, 2)) -> tuple[Recipe, ...]:  # fmt: skip
    """``NET_ROWS`` at training seeds ``seeds``, and at ``full_seeds`` too for the rows named
    in ``full``; the new recipe's own run at every seed above 2 (its seeds 1
    and 2 are rows of the second round)."""
    unknown = set(full) - {name for name, *_ in NET_ROWS}
    if unknown:
        raise SystemExit(f"--full names no row of NET_ROWS: {sorted(unknown)}; the rows: "
                         + " | ".join(name for name, *_ in NET_ROWS))  # fmt: skip
    plan = []
    for name, changes, steps in NET_ROWS:
        mine = sorted(set(seeds) | (set(full_seeds) if name in full else set()))
        plan.append((name, changes, steps, mine))
    used = set(seeds).union(*(mine for *_, mine in plan))
    rows = [
        Recipe(seeded_name("new", s), (1000,), new_ablation({"seed": s}), "", draws)
        for s in sorted(used)
        if s > 2
    ]  # first: the baseline of the later rows' seeds
    for name, changes, steps, mine in plan:
        rows += [Recipe(seeded_name(name, s), (steps,), new_ablation({**changes, "seed": s}),
                        "", draws) for s in mine]  # fmt: skip
    return tuple(rows)


def ablation_rows(draws: int, more: bool = False, net: bool = False, seeds: tuple[int, ...] = (0,),
                  full: tuple[str, ...] = (),
                  full_seeds: tuple[int, ...] = (0, 1, 2)) -> tuple[Recipe, ...]:  # fmt: skip
    """``--ablate``: one ingredient at a time on top of the new recipe (same seeds), the old
    recipe for the ratio, EMA lengths read from one run, and the quickstart's sampler with and
    without the training data's moments on the same model; ``more``: the second round's rows
    too (``--ablate --more``, chosen after the first); ``net``: the third round's
    (``NET_ROWS`` at training ``seeds``, and at ``full_seeds`` for the rows named by
    ``full``)."""
    from scorelab.cli.quickstart import DIGITS_STEPS

    k = DIGITS_STEPS
    second = (
        Recipe("new, training seed 1", (k,), new_ablation({"seed": 1}), "", draws,
               prior_check=True),
        Recipe("old, training seed 1", (1500,), ablation({"seed": 1}), "", draws),
        Recipe("new, training seed 2", (k,), new_ablation({"seed": 2}), "", draws,
               prior_check=True),
        Recipe("old, training seed 2", (1500,), ablation({"seed": 2}), "", draws),
        Recipe("new + lr 3e-3", (k,), new_ablation({"lr": 3e-3}), "", draws),
        Recipe("new + batch 128 (700 steps)", (700,), new_ablation({"batch_size": 128}), "",
               draws),
    )  # fmt: skip
    return (
        Recipe(NEW, (k,), new_config, "the new recipe (baseline of this section)", draws,
               emas=EMA_GAMMAS, prior_check=True),
        Recipe(OLD, (1500,), old_config, "before issue 21", draws, one_run=True),
        Recipe("new + ln sigma ~ N(-0.6, 1.2^2)", (k,),
               new_ablation({"objective_kwargs": {"p_mean": -0.6}}), "", draws),
        Recipe("new + ln sigma ~ N(-0.8, 1.2^2)", (k,),
               new_ablation({"objective_kwargs": {"p_mean": -0.8}}), "", draws),
        Recipe("new + batch 128 (about equal CPU-s)", (k * 55 // 100,),
               new_ablation({"batch_size": 128}), "", draws),
        Recipe("new, 1200 steps", (1200,), new_config, "", draws),
    ) + (second if more else ()) + (
        net_rows(draws, seeds, full, full_seeds) if net else ()
    )  # fmt: skip


def recipes(quick: bool, draws: int, headline: bool = False,
            seeds: tuple[int, ...] = (0,)) -> tuple[Recipe, ...]:  # fmt: skip
    """The rows: old (read at 2 lengths of one run), new (3 lengths), the diffusers peer, and
    one ablation per ingredient (the old recipe plus that ingredient alone); ``headline``:
    only old, new at the quickstart's length, the new recipe without labels (unconditional)
    and the peer, the first three at every training seed of ``seeds`` (the peer at seed 0)."""
    if headline:
        from scorelab.cli.quickstart import DIGITS_STEPS

        k = DIGITS_STEPS
        rows = []
        for s in sorted(set(seeds) | {0}):
            rows += [
                Recipe(OLD, (750, 1500), old_config, "before issue 21", draws, one_run=True)
                if s == 0 else
                Recipe(seeded_name("old", s), (1500,), ablation({"seed": s}), "", draws),
                Recipe(NEW if s == 0 else seeded_name("new", s), (k,),
                       new_ablation({"seed": s}), "after issue 21" if s == 0 else "", draws,
                       sampling_checks=s < 2),
                Recipe(seeded_name(UNCOND, s), (k,),
                       new_ablation({"seed": s, "conditional": False}),
                       "the new recipe without its labels: an unconditional model (the "
                       "quickstart's recipe before it became class-conditional)" if s == 0
                       else "", draws),
            ]  # fmt: skip
        return (*rows[:1], Recipe(PEER, (1500,), None, "peer", draws), *rows[1:])
    if quick:
        return (
            Recipe(OLD, (20, 40), old_config, "baseline", 1, one_run=True),
            Recipe(NEW, (20,), new_config, "", 1),
            Recipe(PEER, (20,), None, "", 1),
        )
    few = max(2, draws // 3)
    return (
        Recipe(OLD, (750, 1500), old_config, "before issue 21", draws, one_run=True),
        Recipe(PEER, (1500,), None, "peer", draws),
        Recipe(NEW, (1500, 1000, 500), new_config, "after issue 21", draws),
        Recipe("old + cosine decay to 0, lr 2e-3", (1500,),
               ablation({"lr": 2e-3, "lr_schedule": "cosine"}), "kept", few),
        Recipe("old + ln sigma ~ N(-0.6, 1.2^2)", (1500,),
               ablation({"objective_kwargs": {"p_mean": -0.6}}), "measured", few),
        Recipe("old + batch 128", (750,), ablation({"batch_size": 128}), "measured", few),
        Recipe("old + one resolution level", (1500,),
               ablation({"net_kwargs": {"channel_mult": [1]}}), "measured", few),
    )  # fmt: skip


@dataclass
class Cell:
    """One recipe trained for ``steps`` steps: its cost and the quality of its samples."""

    recipe: str
    steps: int
    params: int
    cpu_s: float  # process CPU-seconds of training (this cell's process only)
    wall_s: float
    fds: list[float]  # Frechet distance of each sample draw
    sample_cpu_s: float  # CPU-seconds of sampling one draw (mean)


# UNet2DModel of the old recipe's layout: widths 16, 32, one block a level, middle attention
PEER_UNET = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32),
                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8)  # fmt: skip


def diffusers_denoiser(diffusers: ModuleType, steps: int, data: Tensor):
    """diffusers' unconditional DDPM training recipe (examples/unconditional_image_generation/
    train_unconditional.py) on a UNet2DModel of the old recipe's size: DDPMScheduler (T = 1000,
    linear betas), epsilon MSE, AdamW(betas (0.95, 0.999), weight decay 1e-6), cosine schedule
    with warm-up, EMAModel(inv_gamma 1, power 3/4); lr, warm-up and batch as scorelab's old
    recipe (the example's lr 1e-4 with 500 warm-up steps is for runs 100x longer). Returns the
    EMA model as a scorelab denoiser and its parameter count."""
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from scorelab.interop import from_diffusers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = diffusers.UNet2DModel(**PEER_UNET)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=T)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.95, 0.999), weight_decay=1e-6,
                            eps=1e-8)  # fmt: skip
    lr = get_scheduler("cosine", opt, num_warmup_steps=100, num_training_steps=steps)
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0,
                   power=0.75)  # fmt: skip
    g = torch.Generator().manual_seed(SEED)
    for _ in range(steps):
        x = minibatch(data, 64, g)
        noise = torch.randn(x.shape, generator=g)
        t = torch.randint(0, T, (len(x),), generator=g)
        loss = F.mse_loss(model(scheduler.add_noise(x, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lr.step()
        ema.step(model.parameters())
    ema.copy_to(model.parameters())
    params = num_parameters(model)  # before from_diffusers freezes the weights
    return from_diffusers(model, scheduler), params


def frechet_draws(model: Any, clf: Any, ref: Tensor, data: Any, draws: int, n: int,
                  sampler: dict[str, Any] | None = None,
                  classes: bool | None = None) -> tuple[list, float]:  # fmt: skip
    """The Frechet distance of ``draws`` sets of ``n`` samples (by ``SAMPLER``, or by
    ``diffusion.sample``'s defaults plus the options ``sampler``), and CPU-s per draw. A
    class-conditional model samples ``p(x)`` as the quickstart does: each sample's class drawn
    from the class frequencies of the training data ``data`` (``Dataset.draw_labels``, from the
    draw's generator), then ``x | class``; ``classes`` overrides whether labels are drawn
    (default: when ``model.num_classes`` is set)."""
    from scorelab import diffusion
    from scorelab.metrics import frechet_distance

    if classes is None:
        classes = getattr(model, "num_classes", None) is not None
    train = data if classes else None
    fds, start = [], time.process_time()
    for d in range(draws):
        g = torch.Generator().manual_seed(SAMPLE_SEED + d)
        with torch.no_grad():
            opts = SAMPLER if sampler is None else sampler
            cond = None if train is None else train.draw_labels(n, g)
            x = diffusion.sample(model, n, generator=g, progress=False, cond=cond,
                                 **opts).samples  # fmt: skip
            fds.append(frechet_distance(clf.features(x), ref).item())
    return fds, (time.process_time() - start) / draws


def quality_cell(recipe: Recipe, steps: tuple[int, ...], draws: int, n: int, clf_dir: str,
                 tmp: str) -> list[Cell]:  # fmt: skip
    """Train ``recipe`` (one run per count, or one run read at every count) and score it. Runs
    in a worker process with one torch thread."""
    import copy

    from scorelab.metrics import FeatureClassifier

    torch.set_num_threads(1)
    clf = FeatureClassifier.load(clf_dir)
    data, held = load("digits"), load("digits", split="test")
    with torch.no_grad():
        ref = clf.features(held.x)
    cells = []
    if recipe.config is None:
        diffusers = load_diffusers()
        for k in steps:
            cpu, wall = time.process_time(), time.perf_counter()
            model, params = diffusers_denoiser(diffusers, k, data.x)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            fds, per = frechet_draws(model, clf, ref, data, draws, n)
            cells.append(Cell(recipe.name, k, params, cpu, wall, fds, per))
        return cells
    runs = [max(steps)] if recipe.one_run else list(steps)
    for total in runs:
        cfg = recipe.config(total, f"{tmp}/{recipe.name}-{total}")
        trainer = Trainer(cfg, data=data)
        params = num_parameters(trainer.model)
        extra = {g: PowerEMA(trainer.model, g) for g in recipe.emas}
        cpu_used, wall_used, models = 0.0, 0.0, {}
        while trainer.step < total:
            cpu, wall = time.process_time(), time.perf_counter()
            trainer.train_step()
            cpu_used += time.process_time() - cpu
            wall_used += time.perf_counter() - wall
            for e in extra.values():  # outside the timed step: they are read-outs of one run
                e.update(trainer.model, trainer.step)
            if trainer.step in steps:
                models[trainer.step] = (copy.deepcopy(trainer.ema_model()), cpu_used, wall_used)
        for k, (model, cpu, wall) in sorted(models.items()):
            fds, per = frechet_draws(model, clf, ref, data, draws, n)
            cells.append(Cell(recipe.name, k, params, cpu, wall, fds, per))
        for g, e in extra.items():
            model = copy.deepcopy(trainer.ema_model())
            model.load_state_dict(e.state_dict())
            fds, per = frechet_draws(model, clf, ref, data, draws, n)
            name = f"{recipe.name}, power EMA gamma {g:g} (sigma_rel {power_ema_sigma_rel(g):.3f})"
            cells.append(Cell(name, total, params, cpu_used, wall_used, fds, per))
        if recipe.sampling_checks:  # other ways to sample the same conditional weights
            from scorelab.diffusion import ClassifierFreeGuidance

            model = trainer.ema_model()
            checks = (
                ("classifier-free guidance w 1.5 (70 NFE)", ClassifierFreeGuidance(model, 1.5),
                 {**SAMPLER, "nfe": 70}, True),
                ("its unconditional branch (no label)", model, SAMPLER, False),
                ("EDM churn at its largest gamma (S_churn 40)", model,
                 {**SAMPLER, "s_churn": 40.0}, True),
            )  # fmt: skip
            for label, m, opts, classes in checks:
                fds, per = frechet_draws(m, clf, ref, data, draws, n, sampler=opts, classes=classes)
                cells.append(Cell(f"{recipe.name}, {label}", total, params, cpu_used, wall_used,
                                  fds, per))  # fmt: skip
        if recipe.prior_check:  # the quickstart's sampling, on the same weights and seeds
            from scorelab.cli.sample_cmd import data_moments

            Path(cfg.out).mkdir(parents=True, exist_ok=True)  # data_moments stores them there
            moments = data_moments(Path(cfg.out), {"train": cfg.to_dict()}, data)
            heun = {"sampler": "heun", "nfe": 35, "prior_moments": moments}
            for label, opts in (("zero prior", {}), ("data prior", {"prior_moments": moments}),
                                ("data prior, heun 35", heun)):  # fmt: skip
                fds, per = frechet_draws(
                    trainer.ema_model(), clf, ref, data, draws, n, sampler=opts
                )
                cells.append(Cell(f"{recipe.name}, diffusion.sample defaults, {label}", total,
                                  params, cpu_used, wall_used, fds, per))  # fmt: skip
    return cells


def floor_draws(draws: int, n: int, clf: Any) -> list[float]:
    """The data floor at ``n``: ``n`` random training images in place of samples, per draw."""
    from scorelab.metrics import frechet_distance

    data, held = load("digits"), load("digits", split="test")
    with torch.no_grad():
        ref, feats = clf.features(held.x), clf.features(data.x)
    g = torch.Generator().manual_seed(SAMPLE_SEED)
    return [frechet_distance(feats[torch.randperm(len(feats), generator=g)[:n]], ref).item()
            for _ in range(draws)]  # fmt: skip


RAW = Path(tempfile.gettempdir()) / "scorelab-training-quality.json"


def save_raw(result: dict[str, Any]) -> None:
    """The cells so far as JSON in ``RAW`` (``--from-json`` rebuilds the report from it)."""
    cells = [dataclasses.asdict(c) for c in result["cells"]]
    raw = RAW.with_name(RAW.stem + "-ablate.json") if result.get("ablate") else RAW
    raw.write_text(json.dumps({**result, "recipes": None, "cells": cells}))


def row_of(cell: str, rows: tuple[Recipe, ...]) -> str | None:
    """The row a cell belongs to: its name, or a read-out of it (``name, what``); the longest
    such name (``X, training seed 1`` is its own row, not a read-out of ``X``)."""
    names = [r.name for r in rows if cell == r.name or cell.startswith(r.name + ", ")]
    return max(names, key=len, default=None)


def run_quality(quick: bool, draws: int, n: int, jobs: int, headline: bool,
                ablate: bool = False, more: bool = False, reuse: Path | None = None,
                net: bool = False, seeds: tuple[int, ...] = (0,),
                full: tuple[str, ...] = (),
                full_seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, Any]:  # fmt: skip
    """Every cell of ``recipes``, ``jobs`` worker processes at a time (spawned; one thread
    each), and the floor; each finished cell is saved at once (``save_raw``)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from scorelab.metrics import train_classifier

    torch.set_num_threads(1)
    data = load("digits")
    clf = train_classifier(data.x, data.labels, num_classes=data.num_classes,
                           generator=torch.Generator().manual_seed(CLASSIFIER_SEED))  # fmt: skip
    rows = (ablation_rows(draws, more, net, seeds, full, full_seeds) if ablate
            else recipes(quick, draws, headline, seeds))  # fmt: skip
    result = {"recipes": rows, "cells": [], "floor": floor_draws(max(draws, 3), n, clf), "n": n,
              "draws": draws, "headline": headline, "ablate": ablate, "more": more, "net": net,
              "seeds": list(seeds), "full": list(full),
              "full_seeds": list(full_seeds), "baseline": recipe_shown(), "planned": len(rows),
              "command": " ".join(sys.argv[1:])}  # fmt: skip
    if reuse is not None:  # an earlier --ablate run of the same rows: its cells, not rerun
        saved = json.loads(reuse.read_text())
        if (saved["n"], saved["draws"], saved["floor"]) != (n, draws, result["floor"]):
            raise SystemExit(f"--reuse {reuse}: another -n/--draws or floor; run all rows")
        result["cells"] = [Cell(**c) for c in saved["cells"] if row_of(c["recipe"], rows)]
        done = sorted({row_of(c.recipe, rows) for c in result["cells"]})
        meta = saved.get("meta") or {
            "date": "(interrupted; its finished cells)",  # partial
            "load_start": math.nan,
            "load_end": math.nan,
        }
        result["reused"] = {"from": saved.get("command"), "date": meta["date"],
                            "load": [meta["load_start"], meta["load_end"]],
                            "rows": done, "earlier": saved.get("reused")}  # fmt: skip
        rows = tuple(r for r in rows if r.name not in done)
    with tempfile.TemporaryDirectory() as tmp:
        clf.save(f"{tmp}/classifier")
        # one task per run: a one_run recipe is one task, others one per step count
        tasks = [(r, r.steps) if r.one_run else (r, (k,)) for r in rows
                 for k in ((None,) if r.one_run else r.steps)]  # fmt: skip
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures = [pool.submit(quality_cell, r, ks, r.draws, n, f"{tmp}/classifier", tmp)
                       for r, ks in tasks]  # fmt: skip
            for f in futures:
                for c in f.result():
                    result["cells"].append(c)
                    save_raw(result)  # a failure later keeps these
                    print(f"{c.recipe}, {c.steps} steps: {c.cpu_s:.0f} CPU-s, FD "
                          f"{statistics.mean(c.fds):.2f} (load {os.getloadavg()[0]:.1f})",
                          flush=True)  # fmt: skip
    return result


def spread(values: list[float]) -> str:
    """``mean +- sd (min-max)`` of the draws."""
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.2f} ± {sd:.2f} ({min(values):.2f}-{max(values):.2f})"


def quality_table(result: dict[str, Any]) -> str:
    """One line per cell: cost, Frechet distance over draws, distance to the floor, and that
    distance relative to the old recipe's at its quickstart length (1500 steps)."""
    floor = statistics.mean(result["floor"])
    cells = result["cells"]
    old = [c for c in cells if c.recipe == OLD and c.steps == 1500]
    old_gap = statistics.mean(old[0].fds) - floor if old else float("nan")
    lines = [
        "| recipe | steps | params | train CPU-s | FD over draws: mean ± sd (range) | draws | "
        "FD - floor | gap / old gap |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for c in cells:
        if c.recipe == PEER and not c.params:  # a run saved before the count came first
            c.params = num_parameters(load_diffusers().UNet2DModel(**PEER_UNET))
        gap = statistics.mean(c.fds) - floor
        lines.append(f"| {c.recipe} | {c.steps} | {c.params:,} | {c.cpu_s:.0f} | {spread(c.fds)} "
                     f"| {len(c.fds)} | {gap:.2f} | {gap / old_gap:.2f} |")  # fmt: skip
    lines.append(f"| data floor ({result['n']} training images) | | | | "
                 f"{spread(result['floor'])} | {len(result['floor'])} | 0 | |")  # fmt: skip
    return "\n".join(lines)


QUALITY_METHOD = """\
- **Cells.** Each (recipe, length) trains from seed {seed} in its own spawned process with one
  torch thread ({jobs} at a time), so "train CPU-s" is that process's `time.process_time()`
  over the optimizer steps alone, whatever else ran on the machine (wall time would mostly
  measure the other processes). The old recipe's schedule does not depend on the run length,
  so one run is read at each of its lengths (the EMA weights at that step are exactly those
  of a run of that length, and the CPU-seconds those spent up to it); the new recipe's
  learning rate decays to zero at the run's end, so each of its lengths is a separate run.
- **Quality.** The EMA weights sample {draws} draws of {n} digits (seeds {sample_seed}...)
  with one sampler for every row, {sampler}, so rows differ only by training; a
  class-conditional model (the new recipe) draws each sample's class from the training
  data's class frequencies first (`Dataset.draw_labels`, from the draw's generator), so its
  samples are a draw of p(x) = sum_c p(c) p(x | c), as in the quickstart. Each draw is
  scored by the Frechet distance of the features of scorelab's `FeatureClassifier`, trained
  once on the training split from seed {clf_seed} (independent of every recipe), against the
  360 test images. The floor is the same distance for {n} random training images in place of
  samples ({floor_draws} draws): a model that sampled the data distribution exactly would
  score about that. "FD - floor" is the distance to the floor; "gap / old gap" divides it by
  the old recipe's at 1500 steps (its quickstart length). {ablations}
- **Recipes.** Old: `TrainConfig(net="unet", net_kwargs={{"base_channels": 16,
  "num_res_blocks": 1}}, batch_size=64, lr=1e-3, steps=1500)` with the defaults (constant lr
  after 100 warm-up steps, EMA 0.999, EDM loss with ln sigma ~ N(-1.2, 1.2^2)). New:
  `scorelab.cli.quickstart.digits_config` (below). diffusers: {peer}"""


def recipe_shown() -> dict[str, Any]:
    """The fields of the new recipe (``digits_config``) that differ between the rows."""
    from scorelab.cli.quickstart import digits_config

    new = digits_config(SEED, "run").to_dict()
    return {k: new[k] for k in ("steps", "batch_size", "lr", "lr_schedule", "warmup_steps",
                                "ema_decay", "objective_kwargs", "net_kwargs", "conditional",
                                "label_dropout")}  # fmt: skip


def quality_report(result: dict[str, Any], meta: dict[str, Any], jobs: int) -> str:
    shown = recipe_shown()
    notes = "\n".join(f"- {r.name}: {r.note}." for r in result["recipes"] if r.note)
    return "\n".join(
        [
            QUALITY_MARK,
            "",
            "# Quality against training CPU-seconds: digits U-Net recipes (issue 21)",
            "",
            f"Generated by `python benchmarks/training.py {result['command']}` on "
            f"{meta['date']} ({meta['minutes']:.1f} min in all).",
            "",
            f"- Machine: {machine()}; load average {meta['load_start']:.2f} at the start and "
            f"{meta['load_end']:.2f} at the end (shared: compare CPU-seconds, not wall time).",
            f"- New recipe: `{shown}`.",
            "",
            "## How it was measured",
            "",
            QUALITY_METHOD.format(
                seed=SEED,
                jobs=jobs,
                draws=result["draws"],
                n=result["n"],
                sample_seed=SAMPLE_SEED,
                sampler=SAMPLER,
                clf_seed=CLASSIFIER_SEED,
                floor_draws=len(result["floor"]),
                ablations="This run measured only the headline rows (`--headline`); the "
                "ablation rows of a full run (the old recipe plus one ingredient each) were not "
                "run."
                if result.get("headline")
                else "Ablation rows use a third of the draws.",
                peer=" ".join(diffusers_denoiser.__doc__.split()).split(" Returns")[0],
            ),
            "",
            "## Results",
            "",
            quality_table(result),
            "",
            "Rows and what became of them:",
            "",
            notes,
            "",
            quality_notes(result),
            *seed_summary(result),
        ]
    )


ABLATION_MARK = "<!-- ablations of the new recipe: written by benchmarks/training.py --ablate -->"


def write_quality(text: str, out: Path | None, mark: str = QUALITY_MARK) -> None:
    """Replace the section of ``out`` that starts at ``mark`` (``QUALITY_MARK``, then
    ``ABLATION_MARK``), keeping the sections before it and a later one (each section states its
    own run)."""
    if out is None:
        print(text)
        return
    old = out.read_text() if out.exists() else ""
    later = ABLATION_MARK if mark == QUALITY_MARK and ABLATION_MARK in old else None
    tail = "\n" + old[old.index(later) :] if later else ""
    head = (old[: old.index(later)] if later else old).split(mark)[0].rstrip()
    emit((head + "\n\n" if head else "") + text + "\n" + tail, out)


def ablation_report(result: dict[str, Any], meta: dict[str, Any], jobs: int) -> str:
    """The ``--ablate`` section: the table, each row's per-draw difference to the new recipe
    (same sampling seeds, so the draw-to-draw noise of the reference set cancels in part), and
    which ingredients help."""
    floor = statistics.mean(result["floor"])
    cells = result["cells"]
    bases = baselines(cells)
    base = bases.get(0)
    done = len({row_of(c.recipe, result["recipes"]) for c in cells} - {None})
    partial = done < result["planned"]
    reused = result.get("reused")
    lines = [
        ABLATION_MARK,
        "",
        "# Ablations of the new digits recipe (issue 21)",
        "",
        f"Generated by `python benchmarks/training.py {result['command']}` on {meta['date']} "
        f"({meta['minutes']:.1f} min in all)"
        + (f"; PARTIAL: {done} of {result['planned']} planned runs finished." if partial else ".")
        + f" Machine: {machine()}; load average {meta['load_start']:.2f} at the start and "
        f"{meta['load_end']:.2f} at the end; {jobs} worker processes, one torch thread each."
        + (
            f" The rows {', '.join(reused['rows'])} (and their read-outs) are reused from the run "
            f"`python benchmarks/training.py {reused['from']}` of {reused['date']} (load "
            f"{reused['load'][0]:.2f} to {reused['load'][1]:.2f}; `--reuse`, same seeds, "
            "sampler and floor: one-thread training is deterministic, and this run's old and new "
            "rows would repeat them)." + earlier_runs(reused.get("earlier"))
            if reused
            else ""
        ),
        "",
        (
            f'The new recipe of this run (`digits_config` when it ran; every "new" row starts '
            f"from it): `{result['baseline']}`. "
            if result.get("baseline")
            else ""
        )
        + f"Every row is measured as in the section above (training seed {SEED} unless the row "
        f"names another, {result['draws']} draws of "
        f"{result['n']} digits from sampling seeds {SAMPLE_SEED}..., {SAMPLER} unless the row "
        "says otherwise, Frechet distance of classifier features against the test split). "
        "\"vs new, per draw\" is the row's FD minus the new recipe's at the same training seed "
        "on the same sampling seed, mean ± sd over draws (negative: better); within one training "
        "seed these differences carry the sampling noise only, not the seed-to-seed noise of "
        "training, which the table over training seeds below measures. Power-EMA rows are "
        "read-outs of the new recipe's own run (EDM2's power-function EMA, tracked beside the "
        "trainer's; their CPU-s are that run's); the "
        "trainer's EMA at 1000 steps is about gamma 8 (sigma_rel 0.09), because its warm-up "
        "`min(0.999, (1 + t) / (10 + t))` stays below 0.999 until step 9000 (so `ema_decay` "
        "0.998, 0.999 and 0.9995 give the same average at 1000 steps: none is a row). The "
        "`diffusion.sample defaults` rows sample the same weights by the library's default "
        "(UniPC, 20 NFE, default levels): with the zero prior and unit data variance (a bare "
        "network), and with the training data's mean and covariance (`prior_moments`); "
        "`data prior, heun 35` is the quickstart's digits sampling now (Heun, 35 NFE, default "
        "levels, the data's moments).",
        "",
        "| recipe | steps | train CPU-s | FD over draws: mean ± sd (range) | FD - floor | "
        "gap / old gap | vs new, per draw |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    old = next((c for c in cells if c.recipe == OLD and c.steps == 1500), None)
    old_gap = statistics.mean(old.fds) - floor if old else float("nan")
    for c in cells:
        gap = statistics.mean(c.fds) - floor
        diff, mine = "", bases.get(seed_of(c.recipe))
        if mine is not None and c is not mine and len(c.fds) == len(mine.fds):
            d = [a - b for a, b in zip(c.fds, mine.fds, strict=True)]
            sd = statistics.stdev(d) if len(d) > 1 else float("nan")
            diff = f"{statistics.mean(d):+.2f} ± {sd:.2f}"
        lines.append(f"| {c.recipe} | {c.steps} | {c.cpu_s:.0f} | {spread(c.fds)} | {gap:.2f} "
                     f"| {gap / old_gap:.2f} | {diff} |")  # fmt: skip
    lines.append(f"| data floor ({result['n']} training images) | | | {spread(result['floor'])} "
                 "| 0 | | |")  # fmt: skip
    groups = seed_groups(cells, result["recipes"])
    verdicts = []
    for c in cells:  # an ingredient on top of the new recipe, or an EMA read-out of its run
        ingredient = c.recipe.startswith(("new +", NEW + ", power")) or (
            c.recipe.startswith("new, ") and "seed" not in c.recipe
        )
        several = len(groups.get(c.recipe, {})) > 1  # judged over training seeds below
        if base is None or not ingredient or several or seed_of(c.recipe):
            continue
        d = [a - b for a, b in zip(c.fds, base.fds, strict=True)]
        m, sd = statistics.mean(d), statistics.stdev(d) if len(d) > 1 else float("inf")
        # kept only if better by more than twice the standard error of the paired mean
        better = m < -2 * sd / math.sqrt(len(d))
        verdicts.append(
            f"- {c.recipe}: {m:+.2f} ± {sd:.2f} per draw: "
            + (
                "better beyond the draw noise (one training seed)"
                if better
                else "dropped" + (" (worse on average)" if m > 0 else " (within the draw noise)")
            )
        )
    if verdicts:
        lines += ["", "Kept or dropped (`DIGITS_RECIPE` adopts an ingredient only if it beats the "
                  "new recipe beyond twice the standard error of the paired per-draw mean):",
                  "", *verdicts]  # fmt: skip
    lines += seed_summary(result)
    return "\n".join(lines)


def seed_summary(result: dict[str, Any]) -> list[str]:
    """The new and old recipes' distance to the floor over training seeds (seed 0 and the
    ``training seed`` rows), their ratio, and ``seed_table`` of every row run at several."""
    floor, cells = statistics.mean(result["floor"]), result["cells"]
    seeded = re.compile(r"(new|old), training seed \d+")  # the rows, not their read-outs
    gaps = {name: [statistics.mean(c.fds) - floor for c in cells
                   if (c.recipe == name and (name != OLD or c.steps == 1500))
                   or (seeded.fullmatch(c.recipe) and c.recipe.startswith(name[:3]))]
            for name in (NEW, OLD)}  # fmt: skip
    lines = []
    if len(gaps[NEW]) > 1 and len(gaps[OLD]) > 1:
        ratio = statistics.mean(gaps[NEW]) / statistics.mean(gaps[OLD])
        lines += ["", f"Over training seeds (0 and the `training seed` rows): the new recipe's "
                  f"distance to the floor {spread(gaps[NEW])}, the old one's "
                  f"{spread(gaps[OLD])}; the ratio of the means {ratio:.2f} (issue 21 asks for "
                  "0.5 or less)."]  # fmt: skip
    return lines + seed_table(seed_groups(cells, result["recipes"]), baselines(cells), floor,
                              gaps[OLD])  # fmt: skip


def earlier_runs(reused: dict[str, Any] | None) -> str:
    """The runs a reused run reused in turn (``--reuse`` chains), with their load."""
    out = ""
    while reused:
        out += (f" That run reused {len(reused['rows'])} rows from `python benchmarks/training.py "
                f"{reused['from']}` of {reused['date']} (load {reused['load'][0]:.2f} to "
                f"{reused['load'][1]:.2f}).")  # fmt: skip
        reused = reused.get("earlier")
    return out


def baselines(cells: list[Cell]) -> dict[int, Cell]:
    """The new recipe's own run at each training seed (``NEW``, ``new, training seed k``)."""
    return {seed_of(c.recipe): c for c in cells
            if c.recipe == NEW or re.fullmatch(r"new, training seed \d+", c.recipe)}  # fmt: skip


def seed_groups(cells: list[Cell], rows: tuple[Recipe, ...]) -> dict[str, dict[int, Cell]]:
    """The rows (not their read-outs) by name at seed 0, then by training seed."""
    names = {r.name for r in rows}
    out: dict[str, dict[int, Cell]] = {}
    for c in cells:
        if c.recipe in names:
            name = re.sub(r", training seed \d+$", "", c.recipe)
            out.setdefault({"new": NEW, "old": OLD}.get(name, name), {})[seed_of(c.recipe)] = c
    return out


def seed_table(groups: dict[str, dict[int, Cell]], bases: dict[int, Cell], floor: float,
               old_gaps: list[float]) -> list[str]:  # fmt: skip
    """Rows run at two or more training seeds: "FD - floor" per seed (mean over draws), its
    mean ± sd over seeds, the paired per-seed difference to the new recipe at the same seed,
    and the verdict: a two-sided paired t test at 95% over seeds (the seed-to-seed noise of
    training included), at 3+ seeds; 2 seeds are a screen."""
    several = {name: by for name, by in groups.items() if len(by) > 1 and name != OLD}
    if not several or not old_gaps:
        return []
    old_gap = statistics.mean(old_gaps)
    lines = [
        "",
        'Over training seeds (rows run at two or more): "FD - floor" per seed is the mean over '
        "the draws; \"vs new, per seed\" the row's minus the new recipe's at the same training "
        'seed; "gap / old gap" the mean over seeds divided by the old recipe\'s mean over its '
        f"seeds ({old_gap:.2f}; issue 21 asks for 0.5 or less). A row counts as better (worse) "
        "only if its mean paired difference is below (above) minus (plus) t times its standard "
        "error over seeds, t the two-sided 95% Student quantile for seeds - 1 degrees of freedom "
        "(4.30, 3.18, 2.78 at 3, 4, 5 seeds): a paired t test; at 2 seeds it is a screen.",
        "",
        "| recipe | seeds | train CPU-s (mean) | FD - floor per seed | mean ± sd over seeds | "
        "gap / old gap | vs new, per seed | mean ± sd (paired) | verdict |",
        "|---|---|---:|---|---|---:|---|---|---|",
    ]
    for name, by in several.items():
        seeds = sorted(by)
        gap = {s: statistics.mean(by[s].fds) - floor for s in seeds}
        paired = [gap[s] - (statistics.mean(bases[s].fds) - floor) for s in seeds if s in bases]
        sd = statistics.stdev(gap.values())
        if name == NEW:
            paired, shown, verdict = [], "", "baseline"
        elif len(paired) < 2:
            shown, verdict = "", "no baseline at these seeds"
        else:
            m, psd = statistics.mean(paired), statistics.stdev(paired)
            shown = f"{m:+.2f} ± {psd:.2f}"
            from scipy.stats import t as student

            se2 = student.ppf(0.975, len(paired) - 1) * psd / math.sqrt(len(paired))
            verdict = ("screen (2 seeds): " if len(paired) < 3 else "") + (
                "better beyond the seed noise" if m < -se2 else
                "worse beyond the seed noise" if m > se2 else "within the seed noise")  # fmt: skip
        lines.append(
            f"| {name} | {','.join(map(str, seeds))} "
            f"| {statistics.mean(by[s].cpu_s for s in seeds):.0f} "
            f"| {' / '.join(f'{gap[s]:.2f}' for s in seeds)} "
            f"| {statistics.mean(gap.values()):.2f} ± {sd:.2f} "
            f"| {statistics.mean(gap.values()) / old_gap:.2f} "
            f"| {' / '.join(f'{p:+.2f}' for p in paired)} | {shown} | {verdict} |"
        )
    return lines


def quality_notes(result: dict[str, Any]) -> str:
    """What the table says, computed from it: the new recipe's gap to the floor and its cost
    against the old recipe's at their quickstart lengths."""
    from scorelab.cli.quickstart import digits_config

    floor = statistics.mean(result["floor"])
    at = {(c.recipe, c.steps): c for c in result["cells"]}
    old, new = at.get((OLD, 1500)), at.get((NEW, digits_config(SEED, "run").steps))
    if old is None or new is None:
        return "(the quick run has no headline comparison)"
    gap = {k: statistics.mean(c.fds) - floor for k, c in (("old", old), ("new", new))}
    return (
        f"At their quickstart lengths the new recipe ({new.steps} steps, {new.cpu_s:.0f} "
        f"CPU-s) is {gap['new']:.2f} above the floor and the old one ({old.steps} steps, "
        f"{old.cpu_s:.0f} CPU-s) {gap['old']:.2f}: {gap['new'] / gap['old']:.2f} of the old "
        f"distance for {new.cpu_s / old.cpu_s:.2f} of its training CPU time. Sampling one draw "
        f"of {result['n']} took {new.sample_cpu_s:.1f} CPU-s (new) and {old.sample_cpu_s:.1f} "
        "(old) with the common sampler."
    )


def int_list(text: str) -> list[int]:
    """``--seeds 0,1,2``: non-negative integers, comma-separated."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2; got {text!r}")
    return sorted(set(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small pair, batch 64; print only")
    parser.add_argument(
        "--quality", action="store_true", help="quality against training CPU-s, not throughput"
    )
    parser.add_argument("--draws", type=int, default=10, help="--quality: sample draws per cell")
    parser.add_argument("-n", type=int, default=1000, help="--quality: samples per draw")
    parser.add_argument("--jobs", type=int, default=2, help="--quality: worker processes")
    parser.add_argument("--from-json", type=Path, help="--quality: report a saved run's results")
    parser.add_argument(
        "--headline", action="store_true", help="--quality: old, new and the peer only"
    )
    parser.add_argument(
        "--ablate", action="store_true", help="--quality: ingredients on top of the new recipe"
    )
    parser.add_argument("--more", action="store_true", help="--ablate: the second round's rows too")
    parser.add_argument("--net", action="store_true", help="--ablate: the third round's rows "
                        "(network, dropout, sigma_data, clipping; NET_ROWS)")  # fmt: skip
    parser.add_argument("--seeds", type=int_list, default=[0], help="--net, --headline: training "
                        "seeds of every row, e.g. 0,1 (default 0)")  # fmt: skip
    parser.add_argument("--full", type=lambda v: [x for x in v.split("|") if x], default=[],
                        help="--net: '|'-separated row names (NET_ROWS) also run at "
                        "--full-seeds, e.g. 'new + dropout 0.1'")  # fmt: skip
    parser.add_argument(
        "--full-seeds",
        type=int_list,
        default=[0, 1, 2],
        help="--net: training seeds of the --full rows (default 0,1,2)",
    )
    parser.add_argument("--reuse", type=Path, help="--ablate: an earlier run's raw JSON; its rows "
                        "are not run again")  # fmt: skip
    parser.add_argument("--out", type=Path, help=f"report file (default: {RESULTS} unless --quick)")
    args = parser.parse_args()
    plan = PLANS[args.quick]
    out = args.out or (None if args.quick else RESULTS)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    print(f"load average at start: {load_start:.2f}")
    if args.quality:
        if args.from_json:  # rebuild the report of a finished run
            saved = json.loads(args.from_json.read_text())
            more, net = saved.get("more", False), saved.get("net", False)
            seeds, full = tuple(saved.get("seeds", (0,))), tuple(saved.get("full", ()))
            full_seeds = tuple(saved.get("full_seeds", (0, 1, 2)))
            headline = saved.get("headline", False)
            rows = (ablation_rows(saved["draws"], more, net, seeds, full, full_seeds)
                    if saved.get("ablate")
                    else recipes(args.quick, saved["draws"], headline, seeds))  # fmt: skip
            result = {**saved, "recipes": rows, "cells": [Cell(**c) for c in saved["cells"]]}
        else:
            result = run_quality(args.quick, args.draws, args.n, args.jobs, args.headline,
                                 args.ablate, args.more, args.reuse, args.net,
                                 tuple(args.seeds), tuple(args.full),
                                 tuple(args.full_seeds))  # fmt: skip
            print(f"raw results in {RAW.parent} ({RAW.stem}*.json; --from-json rebuilds the "
                  "report)")  # fmt: skip
        if args.from_json and "meta" not in result:  # an interrupted run: a partial report
            meta = run_meta(args.quick, start, load_start) | {"minutes": float("nan")}
            jobs = args.jobs
        elif args.from_json:  # the run's own date, duration, load and worker count
            meta, jobs = result["meta"], result["jobs"]
        else:
            meta, jobs = run_meta(args.quick, start, load_start), args.jobs
            print(f"load average at end: {meta['load_end']:.2f}")
            save_raw({**result, "meta": meta, "jobs": jobs})
        if result.get("ablate"):
            write_quality(ablation_report(result, meta, jobs), out, ABLATION_MARK)
        else:
            write_quality(quality_report(result, meta, jobs), out)
        return
    diffusers = load_diffusers()
    peers = {"diffusers": diffusers} if diffusers is not None else {}
    dataset = load("digits")
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(dataset, diffusers, plan, tmp)
        found = run_profile(dataset, diffusers, plan, tmp)
    meta = run_meta(args.quick, start, load_start, plan=plan)
    print(f"load average at end: {meta['load_end']:.2f}")
    text = report(rows, found, peers, meta) + "\n"
    if out is not None and out.exists() and QUALITY_MARK in out.read_text():
        text += "\n" + QUALITY_MARK + out.read_text().split(QUALITY_MARK, 1)[1]  # keep it
    emit(text, out)


if __name__ == "__main__":
    main()
