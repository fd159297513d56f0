"""``scorelab sample``: draw samples from a trained run, save them and a picture."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import scorelab
from scorelab.cli.common import (
    add_device,
    choose_device,
    diffusers_data,
    fail,
    is_diffusers_record,
    load_any,
    load_run_data,
    run_record,
    to_unit_interval,
)
from scorelab.cli.names import PROCESSES, SAMPLERS

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

    from scorelab.diffusion import Process


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="generate samples from a trained run",
        description="Sample a trained model (EMA weights) and write .npz plus a picture: a grid "
        "for images, a scatter over the data for 2-D sets. Samples are saved in the data's units.",
    )
    p.add_argument("run_dir", help="folder written by scorelab train, or a diffusers folder "
                   "(save_pretrained: a pipeline, or a UNet2DModel and its scheduler)")  # fmt: skip
    p.add_argument("--sampler", default="heun", choices=SAMPLERS, help="sampler")
    p.add_argument("--nfe", type=int, default=35, help="denoiser evaluations per sample")
    p.add_argument("--process", default="edm", choices=PROCESSES,
                   help="noise process: the sigma sequence the sampler steps through")  # fmt: skip
    p.add_argument("-n", type=int, default=1000, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default=None, help="output .npz (default RUN_DIR/samples.npz)")
    p.add_argument("--class", dest="label", default=None, metavar="C",
                   help="class to generate: an index, or 'all' (every class in turn)")  # fmt: skip
    p.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                   help="guidance weight w: 0 unconditional, 1 conditional, > 1 sharper "
                   f"(default {DEFAULT_GUIDANCE})")  # fmt: skip
    p.add_argument("--guidance-kind", choices=["free", "classifier"], default="free",
                   help="free: classifier-free (needs a run trained with --conditional); "
                   "classifier: train a noise-conditional classifier on the data")  # fmt: skip
    p.add_argument("--classifier-steps", type=int, default=2000,
                   help="training steps of the noise-conditional classifier")  # fmt: skip
    p.add_argument("--no-clamp", dest="clamp", action="store_false",
                   help="images: keep sample values outside the data range (default: clamp "
                   "them to it); vectors are never clamped")  # fmt: skip
    add_device(p)
    p.set_defaults(run=run)


DEFAULT_GUIDANCE = 1.5  # >= 99% class accuracy on digits at a modest Frechet cost


def class_labels(spec: str, num_classes: int | None, start: int, count: int) -> torch.Tensor:
    """Labels of samples ``start .. start + count - 1``: one class, or 'all' (index mod K)."""
    import torch

    if num_classes is None:
        raise ValueError("--class needs labelled training data; this run's data has no labels")
    if spec == "all":
        return (start + torch.arange(count)) % num_classes
    try:
        label = int(spec)
    except ValueError:
        label = -1
    if not 0 <= label < num_classes:
        raise ValueError(f"--class must be 'all' or an index in 0..{num_classes - 1}; got {spec!r}")
    return torch.full((count,), label, dtype=torch.long)


def guided_model(model, data, kind: str, weight: float, steps: int, seed: int, device=None):
    """The denoiser to sample class-conditionally: classifier-free guidance of a conditional
    run, or classifier guidance with a noise-conditional classifier trained here."""
    import torch

    from scorelab import diffusion

    if kind == "free":
        if model.num_classes is None:
            raise ValueError(
                "this run was not trained with --conditional, so it has no class-conditional "
                "score: retrain with scorelab train --conditional, or use --guidance-kind "
                "classifier"
            )
        return diffusion.ClassifierFreeGuidance(model, weight)
    from scorelab.nets import train_noisy_classifier

    print(f"training a noise-conditional classifier ({steps} steps) for guidance")
    clf = train_noisy_classifier(data.x.to(device), data.labels.to(device),
                                 num_classes=data.num_classes, steps=steps,
                                 generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return diffusion.ClassifierGuidance(model, clf, weight)


def generate(model, n: int, sampler: str, nfe: int, process: str | Process, seed: int,
             cond=None):  # fmt: skip
    """Samples of a trained model in model units (``cond``: class labels ``[n]``). Baselines
    (VAE, GAN, DAE) draw with their own sampler; ``sampler``, ``nfe`` and ``process`` are then
    unused and the result's ``sampler`` names the family."""
    import torch

    from scorelab import baselines, diffusion

    gen = torch.Generator().manual_seed(seed)
    if baselines.is_baseline(model):
        if cond is not None:
            raise ValueError("this run is an unconditional VAE/GAN/DAE baseline: drop --class")
        return baselines.sample(model, n, generator=gen)
    return diffusion.sample(model, n, sampler=sampler, nfe=nfe, process=process, cond=cond,
                            generator=gen)  # fmt: skip


def picture(samples: torch.Tensor, data, title: str) -> Figure | None:
    """A grid (images) or a scatter over the data (2-D); ``None`` for other shapes."""
    from matplotlib.figure import Figure

    from scorelab.viz import draw_grid, scatter_2d

    fig = Figure(figsize=(6, 6), layout="constrained")
    ax = fig.add_subplot()
    if samples.ndim == 4:
        draw_grid(ax, to_unit_interval(samples[:100], data.normalization), title=title)
    elif samples.shape[1] == 2:
        scatter_2d(ax, data.decode(samples), data.decode(data.x[: len(samples)]), title)
    else:
        return None
    return fig


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from scorelab import baselines, diffusion
    from scorelab.training import distributed

    try:
        record = run_record(args.run_dir)
        device = choose_device(args.device, record)
        if device.type == "cuda" and distributed.env_world_size() > 1:  # torchrun: a GPU per rank
            device = distributed.local_device(torch.device("cuda"))
        model, record = load_any(args.run_dir, device, record)
        process = args.process
        if is_diffusers_record(record):  # no data: 8-bit pixel units; levels in its own range
            data = diffusers_data(record, model.num_classes)
            if process in ("edm", "ve"):
                process = diffusion.make_process(process, sigma_min=model.sigma_min,
                                                 sigma_max=model.sigma_max)  # fmt: skip
        else:
            data = load_run_data(record)
        n, seed = distributed.sample_share(args.n, args.seed)  # this rank's share (torchrun)
        labels = None
        if args.label is not None:
            if baselines.is_baseline(model):
                raise ValueError("this run is an unconditional VAE/GAN/DAE baseline: drop --class")
            start = distributed.share(args.n, distributed.rank(), distributed.world_size())[0]
            labels = class_labels(args.label, data.num_classes, start, n)
            model = guided_model(model, data, args.guidance_kind, args.guidance,
                                 args.classifier_steps, args.seed,
                                 diffusion.model_device(model))  # fmt: skip
        res = generate(model, n, args.sampler, args.nfe, process, seed, labels)
    except ValueError as err:
        fail(err)
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        res = distributed.merge_samples(res, out)  # torchrun: rank 0 gathers every rank's share
    except ValueError as err:
        fail(err)
    if res is None:  # a rank > 0: its samples are in rank 0's output
        return 0
    clamp = args.clamp and res.samples.ndim > 2 and data.normalization.kind == "unit_range"
    if clamp:  # images: the data range is known (config.json), generated pixels stay inside
        outside = (res.samples.abs() > 1).float().mean().item()
        res = dataclasses.replace(res, samples=res.samples.clamp(-1, 1))
        lo, hi = data.normalization.lo[0], data.normalization.hi[0]
        print(f"clamped {outside:.1%} of sample values to the data range {lo:g}..{hi:g} "
              "(--no-clamp keeps them)")  # fmt: skip
    decoded = data.decode(res.samples)
    provenance = {"run": str(args.run_dir), "sampler": res.sampler, "nfe": res.nfe,
                  "process": args.process, "seed": args.seed, "versions": record["versions"],
                  "scorelab": scorelab.__version__, "clamped": clamp}  # fmt: skip
    if distributed.world_size() > 1:  # rank r drew its share with seed rank_seed(seed, r)
        provenance["ranks"] = distributed.world_size()
    arrays = {"samples": decoded.numpy(), "model_units": res.samples.numpy(), "nfe": res.nfe}
    if args.label is not None:  # rank shares are contiguous, so the merged labels are these
        arrays["labels"] = class_labels(args.label, data.num_classes, 0, args.n).numpy()
        provenance.update(
            label=args.label, guidance=args.guidance, guidance_kind=args.guidance_kind
        )
    np.savez(out, **arrays, record=json.dumps(provenance))
    print(f"{args.n} samples with {res.sampler} ({res.nfe} NFE, {res.wall_time:.1f} s) -> {out}")
    fig = picture(res.samples, data, f"{res.sampler}, {res.nfe} NFE")
    if fig is not None:
        fig.savefig(out.with_suffix(".png"), dpi=110)
        print(f"picture -> {out.with_suffix('.png')}")
    return 0
