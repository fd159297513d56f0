"""``scorelab eval``: sample-quality metrics of a sample file, or likelihoods of a trained run.

``scorelab eval SAMPLES.npz [--reference DATA]`` compares samples written by ``scorelab sample``
(or any ``.npy``/``.npz`` array in the data's units) with held-out data; ``scorelab eval RUN_DIR
--nll test`` gives log-likelihoods and bits/dim of a trained score model. Both print a table and
write JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from scorelab.cli.common import (
    add_data_key,
    add_device,
    choose_device,
    fail,
    is_diffusers_record,
    load_any,
    load_run_data,
    run_record,
)

if TYPE_CHECKING:
    import torch

    from scorelab.data import Dataset
    from scorelab.metrics import FeatureClassifier


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="metrics of samples against data, or likelihoods of a trained run",
        description=__doc__,
    )
    p.add_argument("path", help="samples (.npz from scorelab sample, or .npy), a run folder, "
                   "or a diffusers folder (save_pretrained)")  # fmt: skip
    p.add_argument(
        "--reference",
        metavar="DATA",
        help="held-out data: a built-in name (digits: its test split; toy sets: a "
        "fresh draw) or a file; default the held-out part of the samples' run",
    )
    p.add_argument(
        "--nll",
        metavar="DATA",
        help="with a run folder: log-likelihood of 'test' (held-out), 'train', or a "
        "data set name/path, through the probability-flow ODE",
    )
    p.add_argument(
        "-n",
        type=int,
        default=None,
        help="examples for --nll (default 200) or reference rows (default all)",
    )
    p.add_argument(
        "--hutchinson",
        action="store_true",
        help="--nll: Hutchinson divergence (default: exact up to 16 dimensions)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--json", default=None, help="output JSON (default beside the input)")
    add_data_key(p, "--reference or --nll")
    add_device(p)
    p.set_defaults(run=run)


# -- shared with quickstart and report --------------------------------------------------------
def reference_data(
    spec: str | None, record: dict | None, n: int | None, seed: int, data_key: str | None = None
) -> Dataset:
    """Held-out data in the run's model units: the run's held-out part by default, a built-in
    set (digits: test split; toy: a fresh draw), or a file normalized as the run's data
    (``data_key``: its array, for an .npz with several)."""
    import torch

    from scorelab.data import TOY_NAMES, Dataset, Normalization, load

    stored = None if record is None else record["data"]["normalization"]  # None: diffusers
    norm = None if stored is None else Normalization.from_dict(stored)
    if spec is None:
        if record is None:
            raise ValueError("these samples carry no run record; pass --reference DATA")
        held = load_run_data(record, heldout=True)
    else:  # digits: the test split; a toy set: a fresh draw; a file: all of it
        gen = torch.Generator().manual_seed(seed + 1)
        kwargs = {"n": n or 10_000} if spec in TOY_NAMES else {}
        if data_key is not None:
            if not spec.endswith(".npz"):
                raise ValueError(f"--data-key picks an array of an .npz file; {spec} is not one")
            kwargs["key"] = data_key
        held = load(spec, split="test", generator=gen, normalization=norm, **kwargs)
    if n is not None and n < len(held):
        held = Dataset(held.x[:n], None if held.labels is None else held.labels[:n],
                       held.normalization, held.name, held.split, held.num_classes,
                       held.class_names)  # fmt: skip
    return held


def feature_classifier(train: Dataset, seed: int) -> FeatureClassifier | None:
    """A feature classifier trained on labelled image data (a few seconds on digits), else None."""
    import torch

    from scorelab.metrics import train_classifier

    if train.labels is None or train.x.ndim != 4:
        return None
    return train_classifier(train.x, train.labels, num_classes=train.num_classes,
                            generator=torch.Generator().manual_seed(seed))  # fmt: skip


def sample_metrics(
    samples: torch.Tensor,
    held: Dataset,
    train: Dataset | None,
    seed: int,
    requested_labels: torch.Tensor | None = None,
    *,
    device: torch.device | None = None,
    notes: list[str] | None = None,
) -> tuple[dict[str, float], dict[str, float] | None]:
    """(metrics of the samples, the data floor: the same metrics of as many training examples
    in place of the samples, against the same held-out data; ``metrics.data_floor``). Warnings
    about sizes too small for a metric are appended to ``notes``, or printed without it. On
    ``device`` when given (the feature classifier trains there too)."""
    import dataclasses

    import torch

    from scorelab.metrics import data_floor, evaluate, sample_size_warnings

    if device is not None:
        samples, held = samples.to(device), dataclasses.replace(held, x=held.x.to(device))
        train = None if train is None else dataclasses.replace(train, x=train.x.to(device))
    clf = feature_classifier(train, seed) if train is not None else None
    gen = torch.Generator().manual_seed(seed)
    metrics = evaluate(samples, held.x, train=None if train is None else train.x, classifier=clf,
                       requested_labels=requested_labels, generator=gen, warn=False)  # fmt: skip
    feature_dim = None if clf is None else clf.config()["feature_dim"]
    small = sample_size_warnings(metrics, len(samples), feature_dim)
    messages = [f"warning: {w}" for w in small]
    floor = None
    if train is not None:
        m = min(len(samples), len(train))
        if m < len(samples):
            messages.append(
                f"note: the data floor uses all {m} training examples, fewer than the "
                f"{len(samples)} samples; for a floor at the same size evaluate {m} samples"
            )
        floor = data_floor(train.x, held.x, m, classifier=clf,
                           generator=torch.Generator().manual_seed(seed), warn=False)  # fmt: skip
    for line in messages if notes is None else ():
        print(line)
    if notes is not None:
        notes.extend(messages)
    return metrics, floor


def likelihood_table(model, data: Dataset, n: int, seed: int, hutchinson: bool,
                     class_prior: torch.Tensor | None = None) -> dict:  # fmt: skip
    """Mean log-likelihood (nats per example) with its standard error over the ``n`` examples;
    for integer-valued data (pixels) that of the uniformly dequantized data and the bits/dim
    bound it gives (``bits_per_dim``), one ODE solve per example either way.

    ``class_prior`` (``p(c)`` ``[K]``, with a class-conditional model and labelled ``data``):
    the model is the class mixture ``p(x) = sum_c p(c) p(x | c)`` that sampling with labels
    drawn from ``p(c)`` draws from (``scorelab sample --class data``), and each example is
    scored by its own label's term, ``log p(x) >= log p(c_x) + log p(x | c_x)``: a lower bound
    on the log-likelihood (an upper bound on bits/dim), tight when the label is clear from
    ``x``, which is what the table reports (``"conditional"`` says so)."""
    import torch

    from scorelab.data import quantization_step
    from scorelab.diffusion import bits_per_dim, log_likelihood, nats_to_bits_per_dim

    x = data.x[:n].to(next(model.parameters()).device)
    gen = torch.Generator().manual_seed(seed)
    exact = False if hutchinson else None
    d = x[0].numel()
    out: dict[str, float | int | str] = {"data": f"{data.name} ({data.split})", "n": len(x)}
    width = quantization_step(data.x)
    # a diffusers model: integrate over its own schedule's sigma range
    span = {k: getattr(model, k) for k in ("sigma_min", "sigma_max") if hasattr(model, k)}
    log_pc: torch.Tensor | float = 0.0
    if class_prior is not None:
        labels = data.labels[:n]
        span["cond"] = labels.to(x.device)
        log_pc = class_prior.double().log()[labels].to(x)  # x's dtype and device
        out["conditional"] = ("class mixture, scored by each example's label: log p(c) + "
                              "log p(x | c), a lower bound on log p(x)")  # fmt: skip
    if width is None:
        ll = log_likelihood(model, x, exact=exact, generator=gen, **span) + log_pc
    else:
        bpd = bits_per_dim(model, x, width, exact=exact, generator=gen, **span)
        bpd = bpd + nats_to_bits_per_dim(log_pc, d)  # -log p(c) / (d ln 2); 0 unconditionally
        out["bits_per_dim"], out["bits_per_dim_se"] = _mean_se(bpd)
        out["bin_width"] = width
        ll = -bpd * d * math.log(2) - d * math.log(width)  # inverse of nats_to_bits_per_dim
    out["log_likelihood_nats"], out["log_likelihood_se"] = _mean_se(ll)
    out["nats_per_dim"] = -out["log_likelihood_nats"] / d
    return out


def _mean_se(t: torch.Tensor) -> tuple[float, float]:
    t = t.double()
    return t.mean().item(), (t.std() / math.sqrt(len(t))).item() if len(t) > 1 else float("nan")


def format_metrics(metrics: dict[str, float], floor: dict[str, float] | None) -> str:
    """A plain-text table: metric, value, data floor, meaning."""
    from scorelab.metrics import DESCRIPTIONS

    lines = [f"  {'metric':20s} {'samples':>10s} {'data floor':>11s}  meaning"]
    for name, value in metrics.items():
        fl = "" if floor is None or name not in floor else f"{floor[name]:11.4g}"
        lines.append(f"  {name:20s} {value:10.4g} {fl:>11s}  {DESCRIPTIONS.get(name, '')}")
    return "\n".join(lines)


# -- the command --------------------------------------------------------------------------------
def _read_samples(path: Path) -> tuple[torch.Tensor, dict | None, torch.Tensor | None]:
    """(samples, run record or None, requested labels or None); samples in the run's model
    units when a record is present, else as stored (data units)."""
    import numpy as np
    import torch

    try:
        arrays = np.load(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read samples from {path}: {err}") from err
    if isinstance(arrays, np.ndarray):
        return torch.from_numpy(arrays).float(), None, None
    record = None
    if "record" in arrays:
        provenance = json.loads(str(arrays["record"]))
        run = provenance.get("run")
        if run and any(Path(run, f).exists() for f in ("config.json", "model_index.json")):
            record = run_record(run)  # a run folder or a diffusers folder
    key = "model_units" if record is not None and "model_units" in arrays else "samples"
    if key not in arrays:
        raise ValueError(f"{path} holds no 'samples' array; pass a file from scorelab sample")
    labels = torch.from_numpy(arrays["labels"]).long() if "labels" in arrays else None
    return torch.from_numpy(arrays[key]).float(), record, labels


def run(args: argparse.Namespace) -> int:
    from scorelab.data import Dataset, Normalization

    path = Path(args.path)
    result: dict = {"input": str(path)}
    try:
        if path.is_dir():
            if not args.nll:
                fail("a run folder needs --nll DATA (test, train, or a data set); to judge "
                     "samples, run scorelab sample first and pass the .npz")  # fmt: skip
            model, record = load_any(path, args.device)
            if args.nll == "test":
                data = load_run_data(record, heldout=True)
            elif args.nll == "train":
                data = load_run_data(record)
            else:
                data = reference_data(args.nll, record, None, args.seed, args.data_key)
            prior = None
            if getattr(model, "num_classes", None) is not None and data.labels is not None:
                prior = (data if args.nll == "train" else load_run_data(record)).class_frequencies()
            table = likelihood_table(model, data, args.n or 200, args.seed, args.hutchinson,
                                     prior)  # fmt: skip
            result["likelihood"] = table
            print(f"likelihood of {table['n']} examples of {table['data']} (probability-flow ODE)")
            if prior is not None:
                print(f"  class-conditional run: {table['conditional']}")
            what = "log p(x)" if "bits_per_dim" not in table else "log p(dequantized x)"
            print(f"  {what}: {table['log_likelihood_nats']:.3f} +- "
                  f"{table['log_likelihood_se']:.3f} nats per example "
                  f"({table['nats_per_dim']:.4f} nats/dim)")  # fmt: skip
            if "bits_per_dim" in table:
                print(f"  bits/dim (dequantized bound): {table['bits_per_dim']:.4f} +- "
                      f"{table['bits_per_dim_se']:.4f}")  # fmt: skip
            out = Path(args.json) if args.json else path / "eval.json"
        else:
            samples, record, labels = _read_samples(path)
            held = reference_data(args.reference, record, args.n, args.seed, args.data_key)
            if record is None:  # samples in data units: compare in data units
                held = Dataset(held.decode(held.x), held.labels, Normalization.identity(),
                               held.name, held.split)  # fmt: skip
            has_data = record is not None and not is_diffusers_record(record)
            train = load_run_data(record) if has_data else None
            device = choose_device(args.device, record or {})
            notes: list[str] = []
            metrics, floor = sample_metrics(samples, held, train, args.seed, labels,
                                            device=device, notes=notes)  # fmt: skip
            floor_n = None if train is None else min(len(samples), len(train))
            result.update(reference=f"{held.name} ({held.split}, {len(held)} examples)",
                          n_samples=len(samples), metrics=metrics, floor=floor,
                          floor_n=floor_n, warnings=notes)  # fmt: skip
            print(f"{len(samples)} samples against {result['reference']}"
                  + ("" if floor_n is None else f"; data floor: {floor_n} training examples "
                     "against the same data"))  # fmt: skip
            print(format_metrics(metrics, floor))
            for line in notes:
                print(line)
            out = Path(args.json) if args.json else path.with_suffix(".eval.json")
    except ValueError as err:
        fail(err)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {out}")
    return 0
