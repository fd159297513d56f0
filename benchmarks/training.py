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
import math
import os
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small pair, batch 64; print only")
    parser.add_argument("--out", type=Path, help=f"report file (default: {RESULTS} unless --quick)")
    args = parser.parse_args()
    plan = PLANS[args.quick]
    out = args.out or (None if args.quick else RESULTS)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    print(f"load average at start: {load_start:.2f}")
    diffusers = load_diffusers()
    peers = {"diffusers": diffusers} if diffusers is not None else {}
    dataset = load("digits")
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(dataset, diffusers, plan, tmp)
        found = run_profile(dataset, diffusers, plan, tmp)
    meta = run_meta(args.quick, start, load_start, plan=plan)
    print(f"load average at end: {meta['load_end']:.2f}")
    text = report(rows, found, peers, meta) + "\n"
    emit(text, out)


if __name__ == "__main__":
    main()
