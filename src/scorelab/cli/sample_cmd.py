"""``scorelab sample``: draw samples from a trained run, save them and a picture."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
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
    parse_params,
    run_record,
    to_unit_interval,
)
from scorelab.cli.names import PROCESSES, SAMPLERS

DEFAULT_SAMPLER, DEFAULT_NFE = "unipc", 20  # scorelab.diffusion.api's (no torch import here)
SCHEDULES = ("auto", "default", "optimized")
PRIORS = ("zero", "data")
MOMENTS_FILE, SCHEDULES_FILE = "data_moments.npz", "schedules.json"
FULL_COV_MAX_DIM = 1024  # above: per-coordinate variances (a full cov would be d^2 numbers)
OPT_BATCH, OPT_SEED, OPT_FINE_SCALE = 512, 0, 0.01  # optimized_sigmas' draws and weighting

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

    from scorelab.data import Dataset
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
    p.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=SAMPLERS,
                   help=f"sampler (default {DEFAULT_SAMPLER}, the benchmark's best)")  # fmt: skip
    p.add_argument("--nfe", type=int, default=DEFAULT_NFE,
                   help=f"most evaluations per sample (default {DEFAULT_NFE})")  # fmt: skip
    p.add_argument("--process", default=None, choices=PROCESSES,
                   help="noise process: step through its own sigma sequence instead of the "
                   "default levels (diffusion.default_schedule, sigma_max 80)")  # fmt: skip
    p.add_argument("--process-param", dest="process_params", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="a parameter of --process, repeatable (e.g. --process-param "
                   "spacing=linspace --process-param shift=3 for flow)")  # fmt: skip
    p.add_argument("--schedule", default="auto", choices=SCHEDULES,
                   help="auto: the optimized schedule stored in RUN_DIR/schedules.json for this "
                   "sampler and --nfe if there is one, else the default levels; default: the "
                   "default levels; optimized: the stored one, fitted to the model and stored "
                   "first if missing (a few hundred evaluations on 512 draws, once)")  # fmt: skip
    p.add_argument("--sigmas", type=float, nargs="+", default=None, metavar="SIGMA",
                   help="explicit noise levels, decreasing, ending in 0 (replaces --process and "
                   "--schedule; the sampler spends what they cost)")  # fmt: skip
    p.add_argument("--prior", default=None, choices=PRIORS,
                   help="where sampling starts: zero is N(0, sigma_max^2 I); data is N(mean, "
                   "cov + sigma_max^2 I) with the training data's moments (stored in "
                   "RUN_DIR/data_moments.npz); default: data if the run has data")  # fmt: skip
    p.add_argument("-n", type=int, default=1000, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default=None, help="output .npz (default RUN_DIR/samples.npz)")
    p.add_argument("--class", dest="label", default=None, metavar="C",
                   help="class to generate: an index, 'all' (every class in turn), 'data' "
                   "(each sample's class drawn from the training data's class frequencies: a "
                   "sample of p(x)) or 'none' (the model's unconditional branch); default: data "
                   "for a run trained with --conditional, else none")  # fmt: skip
    p.add_argument("--guidance", type=float, default=None,
                   help="guidance weight w: 0 unconditional, 1 conditional, > 1 sharper "
                   f"(default {DEFAULT_GUIDANCE} for a class or all, 1 for data)")  # fmt: skip
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


def class_labels(spec: str, data: Dataset, start: int, count: int, total: int,
                 seed: int) -> torch.Tensor:  # fmt: skip
    """Labels of samples ``start .. start + count - 1`` of ``total``: one class, 'all' (index
    mod K), or 'data': drawn from the training data's class frequencies
    (``Dataset.draw_labels``) for all ``total`` samples from ``seed``, so that every rank's share
    is its slice of the same draw."""
    import torch

    num_classes = data.num_classes
    if num_classes is None:
        raise ValueError("--class needs labelled training data; this run's data has no labels")
    if spec == "all":
        return (start + torch.arange(count)) % num_classes
    if spec == "data":
        return data.draw_labels(total, torch.Generator().manual_seed(seed))[start : start + count]
    try:
        label = int(spec)
    except ValueError:
        label = -1
    if not 0 <= label < num_classes:
        raise ValueError(f"--class must be 'all', 'data', 'none' or an index in "
                         f"0..{num_classes - 1}; got {spec!r}")  # fmt: skip
    return torch.full((count,), label, dtype=torch.long)


def class_spec(label: str | None, model, family: str) -> str | None:
    """``--class`` as given, or its default: 'data' for a class-conditional score run (its
    samples are then a draw of ``p(x) = sum_c p(c) p(x | c)``), else none (``None``)."""
    if label == "none":
        return None
    if label is None and family == "score" and getattr(model, "num_classes", None) is not None:
        return "data"
    return label


def guidance_weight(spec: str, weight: float | None) -> float:
    """``--guidance``, or its default: 1 (the conditional model itself) when the classes are
    drawn from the data, ``DEFAULT_GUIDANCE`` for a chosen class or 'all'."""
    if weight is not None:
        return weight
    return 1.0 if spec == "data" else DEFAULT_GUIDANCE


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


def run_family(record: dict) -> str:
    """The run's model family (``TrainConfig.model``: "score", "vae", ...); a diffusers folder
    holds a score model."""
    return record.get("train", {}).get("model", "score")


def check_unconditional(family: str, cond) -> None:
    """Class labels need a score model: the baselines are unconditional."""
    if cond is not None and family != "score":
        raise ValueError(f"this run is an unconditional {family.upper()} baseline: drop --class")


def generate(record: dict, model, n: int, sampler: str, nfe: int,
             process: str | Process | None, seed: int, cond=None, sigmas=None,
             prior: str | None = None):  # fmt: skip
    """Samples of a trained model in model units (``cond``: class labels ``[n]``), drawn by its
    model family's ``sample`` (``scorelab.families``; the family is the run's ``model``). Score
    models take the options; the baselines (VAE, GAN, DAE) draw with their own sampler, so
    ``sampler``, ``nfe`` and ``process`` are then unused and the result's ``sampler`` names the
    family."""
    import torch

    from scorelab import families

    family = run_family(record)
    check_unconditional(family, cond)
    gen = torch.Generator().manual_seed(seed)
    return families.get(family).sample(model, n, generator=gen, sampler=sampler, nfe=nfe,
                                     process=process, cond=cond, sigmas=sigmas,
                                     prior=prior)  # fmt: skip


def _data_key(record: dict) -> str:
    """What the training data was drawn from: moments stored under another key are stale."""
    train = record["train"]
    return json.dumps({k: train.get(k) for k in ("data", "data_kwargs", "n", "seed")},
                      sort_keys=True)  # fmt: skip


def data_moments(run_dir: Path, record: dict, data) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[d]`` and covariance of the run's training data in model units, for the
    data-aware prior and the default levels: a full ``[d, d]`` covariance up to
    ``FULL_COV_MAX_DIM`` coordinates, per-coordinate variances ``[d]`` above. Computed once
    and stored in ``RUN_DIR/data_moments.npz`` (recomputed if the run's data changed)."""
    import numpy as np
    import torch

    from scorelab.training.checkpoint import write_atomic

    path, key = run_dir / MOMENTS_FILE, _data_key(record)
    if path.exists():
        with np.load(path) as f:
            if str(f["key"]) == key:
                return torch.from_numpy(f["mean"]), torch.from_numpy(f["cov"])
    x = data.x.reshape(len(data.x), -1).double()
    mean = x.mean(0)
    cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1]) if x.shape[1] <= FULL_COV_MAX_DIM else \
        x.var(0)  # fmt: skip
    try:
        write_atomic(path, lambda f: np.savez(f, mean=mean.numpy(), cov=cov.numpy(),
                                              key=np.array(key)))  # fmt: skip
    except OSError as err:  # a read-only run folder: use them without storing
        print(f"note: could not store the data moments in {path} ({err.strerror})")
    return mean, cov


def _checkpoint_id(run_dir: Path) -> str | None:
    latest = run_dir / "checkpoints" / "latest.json"
    return latest.read_text().strip() if latest.exists() else None


def stored_schedule(run_dir: Path, steps: int) -> list[float] | None:
    """The optimized levels for ``steps`` steps in ``RUN_DIR/schedules.json``, if stored for
    the run's current checkpoint."""
    path = run_dir / SCHEDULES_FILE
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    if stored.get("checkpoint") != _checkpoint_id(run_dir):
        print(f"note: {path} was fitted to an earlier checkpoint; not used (--schedule "
              "optimized fits it again)")  # fmt: skip
        return None
    return stored.get("levels", {}).get(str(steps))


def fit_schedule(model, run_dir: Path, steps: int, sigma_max: float, sigma_min: float,
                 moments: tuple | None) -> list[float]:  # fmt: skip
    """``diffusion.optimized_sigmas`` for this model and ``steps`` levels, fitted on
    ``OPT_BATCH`` draws of the prior at ``sigma_max`` (the data-aware one when the moments are
    known), and stored in ``RUN_DIR/schedules.json`` next to those for other step counts."""
    import torch

    from scorelab import diffusion
    from scorelab.training.checkpoint import write_atomic

    gen = torch.Generator().manual_seed(OPT_SEED)
    device = diffusion.model_device(model) or torch.device("cpu")
    shape = tuple(model.event_shape)
    dim = math.prod(shape)
    if moments is not None:
        prior = diffusion.DataPrior.from_moments(*moments, dim=dim)
        x = prior.sample(OPT_BATCH, shape, sigma_max, gen, device=device)
        fine_scale = OPT_FINE_SCALE * prior.variance()
    else:
        x = sigma_max * torch.randn((OPT_BATCH, *shape), generator=gen).to(device)
        fine_scale = OPT_FINE_SCALE
    print(f"fitting a {steps}-level schedule to the model (GITS-style dynamic programming, "
          f"{OPT_BATCH} draws)")  # fmt: skip
    levels = diffusion.optimized_sigmas(diffusion.as_denoiser(model), x, steps,
                                        sigma_max=sigma_max, sigma_min=sigma_min,
                                        fine_scale=fine_scale).tolist()  # fmt: skip
    path = run_dir / SCHEDULES_FILE
    stored = json.loads(path.read_text()) if path.exists() else {}
    if stored.get("checkpoint") != _checkpoint_id(run_dir):
        stored = {}
    stored.update(method="scorelab.diffusion.optimized_sigmas", sigma_max=sigma_max,
                  sigma_min=sigma_min, fine_scale=fine_scale, draws=OPT_BATCH, seed=OPT_SEED,
                  checkpoint=_checkpoint_id(run_dir))  # fmt: skip
    stored.setdefault("levels", {})[str(steps)] = levels
    try:
        write_atomic(path, lambda f: f.write(json.dumps(stored, indent=1).encode()))
        print(f"stored in {path}")
    except OSError as err:
        print(f"note: could not store the schedule in {path} ({err.strerror})")
    return levels


NO_SCHEDULE = ("langevin", "annealed_langevin", "rk45")  # levels of their own, not a schedule


def choose_levels(args: argparse.Namespace, model, run_dir: Path, moments: tuple | None,
                  sigma_range: tuple[float, float]) -> list[float] | None:  # fmt: skip
    """The explicit ``--sigmas``, or the stored (or, with ``--schedule optimized``, newly
    fitted) optimized levels, or ``None`` for the process's or the default levels."""
    from scorelab import diffusion

    if args.sigmas is not None:
        if args.process is not None or args.schedule == "optimized":
            raise ValueError("--sigmas gives the levels itself: drop --process / --schedule")
        try:
            diffusion.check_sigmas(args.sigmas, args.sampler)
        except ValueError as err:
            text = str(err).split(": append 0")[0].replace("sigmas[", "level [")
            raise ValueError(f"--sigmas {' '.join(f'{v:g}' for v in args.sigmas)}: {text}; "
                             "list them from high to low and end with 0") from None  # fmt: skip
        return args.sigmas
    if args.process is not None:
        if args.schedule == "optimized":
            raise ValueError("--process steps through its own levels: drop it to use "
                             "--schedule optimized")  # fmt: skip
        return None
    if args.schedule == "default":
        return None
    if args.sampler in NO_SCHEDULE:
        if args.schedule == "optimized":
            raise ValueError(f"--sampler {args.sampler} runs on levels of its own; "
                             "--schedule optimized is for the step-by-step samplers")  # fmt: skip
        return None
    steps = diffusion.steps_for_nfe(args.sampler, args.nfe, {})
    levels = stored_schedule(run_dir, steps)
    if levels is None and args.schedule == "optimized":
        if steps >= 100:
            raise ValueError(f"--schedule optimized fits at most 99 levels; --nfe {args.nfe} "
                             f"gives {steps} for {args.sampler}")  # fmt: skip
        levels = fit_schedule(model, run_dir, steps, *sigma_range, moments)
    elif levels is not None:
        print(f"using the optimized schedule in {run_dir / SCHEDULES_FILE} ({steps} levels; "
              "--schedule default ignores it)")  # fmt: skip
    return levels


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

    from scorelab import diffusion
    from scorelab.training import distributed

    try:
        record = run_record(args.run_dir)
        device = choose_device(args.device, record)
        if device.type == "cuda" and distributed.env_world_size() > 1:  # torchrun: a GPU per rank
            device = distributed.local_device(torch.device("cuda"))
        model, record = load_any(args.run_dir, device, record)
        process = args.process
        if args.process_params:
            if process is None:
                raise ValueError("--process-param sets a parameter of --process: name the "
                                 "process too (e.g. --process flow)")  # fmt: skip
            params = parse_params(args.process_params, "--process-param")
            try:
                process = diffusion.make_process(process, **params)
            except TypeError:
                fields = ", ".join(f.name for f in dataclasses.fields(diffusion.PROCESSES[process]))
                raise ValueError(f"--process-param {', '.join(params)}: process {process} takes "
                                 f"{fields}") from None  # fmt: skip
        if args.nfe < 1:
            raise ValueError(f"--nfe must be a positive int (denoiser evaluations); got {args.nfe}")
        sigma_range = (80.0, 0.002)  # the default levels' sigma_max; optimized_sigmas' floor
        if is_diffusers_record(record):  # no data: 8-bit pixel units; levels in its own range
            data = diffusers_data(record, model.num_classes)
            sigma_range = (model.sigma_max, max(model.sigma_min, 0.002))
            if process in ("edm", "ve"):  # (the default levels read model.sigma_max)
                process = diffusion.make_process(process, sigma_min=model.sigma_min,
                                                 sigma_max=model.sigma_max)  # fmt: skip
            if args.prior == "data":
                raise ValueError("--prior data needs the run's training data, and a diffusers "
                                 "folder carries none: drop --prior")  # fmt: skip
        else:
            data = load_run_data(record)
        family = run_family(record)
        score_model = family == "score"
        moments = None
        if score_model and not is_diffusers_record(record):
            moments = data_moments(Path(args.run_dir), record, data)
            model.data_moments = moments  # diffusion.sample reads them (DataPrior.known)
        levels = None
        if score_model:
            levels = choose_levels(args, model, Path(args.run_dir), moments, sigma_range)
        n, seed = distributed.sample_share(args.n, args.seed)  # this rank's share (torchrun)
        labels, spec = None, class_spec(args.label, model, family)
        if spec is not None:
            check_unconditional(family, spec)
            start = distributed.share(args.n, distributed.rank(), distributed.world_size())[0]
            labels = class_labels(spec, data, start, n, args.n, args.seed)
            weight = guidance_weight(spec, args.guidance)
            if spec == "data" and args.label is None:
                print("class-conditional run: each sample's class is drawn from the training "
                      "data's class frequencies (--class data; --class none: the model's "
                      "unconditional branch)")  # fmt: skip
            model = guided_model(model, data, args.guidance_kind, weight,
                                 args.classifier_steps, args.seed,
                                 diffusion.model_device(model))  # fmt: skip
        res = generate(record, model, n, args.sampler, args.nfe, process, seed, labels, levels,
                       args.prior)  # fmt: skip
    except ValueError as err:
        fail(re.sub(r"\bnfe = ", "--nfe ", str(err)))  # the budget is the flag here
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
                  "process": args.process,
                  "process_params": parse_params(args.process_params, "--process-param"),
                  "seed": args.seed, "versions": record["versions"],
                  "scorelab": scorelab.__version__, "clamped": clamp}  # fmt: skip
    if getattr(res, "sigmas", None) is not None:  # baselines have no levels
        prior = args.prior or ("data" if moments is not None else "zero")
        provenance.update(sigmas=[round(float(v), 6) for v in res.sigmas], prior=prior)
    if distributed.world_size() > 1:  # rank r drew its share with seed rank_seed(seed, r)
        provenance["ranks"] = distributed.world_size()
    arrays = {"samples": decoded.numpy(), "model_units": res.samples.numpy(), "nfe": res.nfe}
    if spec is not None:  # rank shares are contiguous, so the merged labels are these
        arrays["labels"] = class_labels(spec, data, 0, args.n, args.n, args.seed).numpy()
        provenance.update(label=spec, guidance=weight, guidance_kind=args.guidance_kind)
    np.savez(out, **arrays, record=json.dumps(provenance))
    print(f"{args.n} samples with {res.sampler} ({res.nfe} NFE, {res.wall_time:.1f} s) -> {out}")
    fig = picture(res.samples, data, f"{res.sampler}, {res.nfe} NFE")
    if fig is not None:
        fig.savefig(out.with_suffix(".png"), dpi=110)
        print(f"picture -> {out.with_suffix('.png')}")
    return 0
