"""``scorelab compare``: one model of each family on the same data, budget and metrics.

Trains (or loads, when ``--out`` already holds a finished run with the same settings) a score
model (EDM denoiser, the library default), a VAE, a GAN and a denoising autoencoder with the
same trainer, the same number of steps and batch size, and networks of similar size (the
baselines' width is chosen to match the score model's parameter count), then reports

- sample quality against held-out data (``scorelab.metrics.evaluate``; for images also the
  feature metrics of a classifier trained on the training split), and the memorization ratio,
  for the VAE both of its draws ``x ~ p(x | z)`` and of its decoder means ``E[x | z]``;
- the log-likelihood or its bound where one exists, on held-out data: the score model's
  exact log-likelihood through the probability-flow ODE (Hutchinson's trace estimator above
  16 dimensions), the VAE's ELBO and IWAE_K bound; GANs and DAEs have none;
- parameters, training time, and sampling time per 1000 samples;

as ``compare.md`` and ``compare.json``, with a picture of the samples side by side
(``compare.png``).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scorelab.cli.common import (
    add_overwrite,
    fail,
    load_run_data,
    out_dir,
    to_unit_interval,
    write_run_record,
)
from scorelab.cli.names import DATASETS

if TYPE_CHECKING:
    import torch

    from scorelab.training import TrainConfig

FAMILIES = ("score", "vae", "gan", "dae")
TITLES = {
    "data": "held-out data",
    "score": "score model (EDM)",
    "vae": "VAE",
    "vae_mean": "VAE (decoder mean)",
    "gan": "GAN",
    "dae": "DAE",
}
NO_LIKELIHOOD = {
    "gan": "none: an implicit model (no density)",
    "dae": "none: it learns only the score of the smoothed data (no normalizer)",
}


@dataclass
class Setting:
    """The shared budget and each family's own settings for one kind of data."""

    steps: int
    batch_size: int
    net: str  # "mlp" for vectors, "unet" for images (the baselines' conv nets)
    score_net_kwargs: dict[str, Any]
    lr: dict[str, float]  # per family: each family at a learning rate that suits it
    family_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_samples: int = 2000
    n: int | None = None  # training examples (toy sets: fresh draws)


# Chosen once on these data sets; everything else (steps, batch, EMA, clipping, seed) is shared.
VECTORS = Setting(
    steps=2000,
    batch_size=256,
    net="mlp",
    score_net_kwargs={"hidden": 128, "depth": 3, "emb_dim": 64},
    lr={"score": 2e-3, "vae": 2e-3, "gan": 2e-4, "dae": 2e-3},
    n_samples=2000,
    n=10_000,
)
IMAGES = Setting(
    steps=1500,
    batch_size=64,
    net="unet",
    score_net_kwargs={"base_channels": 16, "num_res_blocks": 1},
    lr={"score": 1e-3, "vae": 1e-3, "gan": 5e-4, "dae": 1e-3},
    family_kwargs={"gan": {"r1_gamma": 1.0}},
    n_samples=1000,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="train a score model, VAE, GAN and DAE on one data set and compare them",
        description=__doc__,
    )
    p.add_argument("--data", default="moons", choices=DATASETS,
                   help="a built-in data set (default moons)")  # fmt: skip
    p.add_argument("--out", default=None, help="output folder (default scorelab-out/compare-DATA)")
    p.add_argument("--models", default=",".join(FAMILIES),
                   help="comma-separated families (default score,vae,gan,dae)")  # fmt: skip
    p.add_argument("--steps", type=int, help="training steps of every model (default per data)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="batch size of every model")
    p.add_argument("-n", "--n-samples", dest="n_samples", type=int, help="samples per model")
    p.add_argument("--ll-examples", dest="ll_examples", type=int, default=200,
                   help="held-out examples for the likelihoods (default 200)")  # fmt: skip
    p.add_argument("--iwae-k", dest="iwae_k", type=int, default=1000,
                   help="importance samples of the VAE's IWAE bound (default 1000)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", help="training device: auto, cpu, cuda, mps")
    add_overwrite(p)
    p.add_argument("--retrain", action="store_true",
                   help="train again even if --out holds finished runs")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test, not a result)")
    p.set_defaults(run=run)


# -- planning -----------------------------------------------------------------------------
def setting_for(data: str, args: argparse.Namespace) -> Setting:
    """The default setting for ``data`` with the command-line overrides applied."""
    base = IMAGES if data == "digits" else VECTORS
    s = Setting(**{**base.__dict__, "lr": dict(base.lr)})
    if args.quick:
        s.steps, s.n_samples = 30, 200
        s.n = None if s.n is None else 2000
    if args.steps is not None:
        s.steps = args.steps
    if args.batch_size is not None:
        s.batch_size = args.batch_size
    if args.n_samples is not None:
        s.n_samples = args.n_samples
    for name in ("steps", "batch_size", "n_samples"):
        if getattr(s, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1; got {getattr(s, name)}")
    return s


def _width_key(net: str) -> str:
    return "channels" if net == "unet" else "hidden"


def match_width(family: str, data, net: str, target: int, seed: int) -> dict[str, Any]:
    """``net_kwargs`` giving a ``family`` baseline about ``target`` parameters: the width
    (``hidden`` for MLPs, ``channels`` for conv nets) found by bisection."""
    from scorelab import baselines
    from scorelab.nets import num_parameters

    key = _width_key(net)

    def count(width: int) -> int:
        model = baselines.build_for_data(family, data, net=net, seed=seed, **{key: width})
        return num_parameters(model)

    lo, hi = 4, 1024
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) <= target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda w: abs(count(w) - target))
    return {key: best}


def plan(
    data_name: str, s: Setting, folder: Path, models: list[str], args
) -> dict[str, TrainConfig]:
    """One ``TrainConfig`` per family: the shared budget, the family's net and learning rate."""
    import torch

    from scorelab.data import load
    from scorelab.nets import num_parameters
    from scorelab.training import TrainConfig, build_model

    common = dict(data=data_name, n=s.n, steps=s.steps, batch_size=s.batch_size, net=s.net,
                  seed=args.seed, device=args.device,
                  checkpoint_every=max(s.steps, 1))  # fmt: skip
    score_cfg = TrainConfig(model="score", lr=s.lr["score"], net_kwargs=dict(s.score_net_kwargs),
                            out=str(folder / "score"), **common)  # fmt: skip
    data = load(data_name, n=s.n, generator=torch.Generator().manual_seed(args.seed))
    target = num_parameters(build_model(score_cfg, data))
    cfgs = {}
    for family in models:
        if family == "score":
            cfgs[family] = score_cfg
            continue
        kwargs = {**match_width(family, data, s.net, target, args.seed),
                  **s.family_kwargs.get(family, {})}  # fmt: skip
        cfgs[family] = TrainConfig(model=family, lr=s.lr[family], net_kwargs=kwargs,
                                   out=str(folder / family), **common)  # fmt: skip
    return cfgs


# -- training or loading --------------------------------------------------------------------
def _finished(run_dir: Path, cfg: TrainConfig) -> bool:
    """True if ``run_dir`` holds a run of exactly ``cfg`` checkpointed at its last step."""
    try:
        record = json.loads((run_dir / "config.json").read_text())
        latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    except (OSError, ValueError):
        return False
    step = int(str(latest.get("checkpoint", "step--1")).rsplit("-", 1)[-1])
    return record.get("train") == cfg.to_dict() and step == cfg.steps


def train_or_load(
    cfg: TrainConfig, retrain: bool
) -> tuple[torch.nn.Module, dict, float | None, bool]:
    """``(EMA model on the CPU, run record, training seconds, loaded?)``."""
    from scorelab.training import load_model, train

    run_dir = Path(cfg.out)
    timing = run_dir / "compare-timing.json"
    if not retrain and _finished(run_dir, cfg):
        model, record = load_model(run_dir, device="cpu")
        try:
            seconds = json.loads(timing.read_text())["train_s"]
        except (OSError, ValueError, KeyError):
            seconds = None
        return model, record, seconds, True
    if run_dir.exists():
        if not retrain:
            raise ValueError(
                f"{run_dir} holds a run with other settings or an unfinished one; pass --retrain "
                f"to replace it, or choose another --out"
            )
        if not (run_dir / "config.json").exists():
            raise ValueError(f"{run_dir} exists and is not a scorelab run; choose another --out")
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    train(cfg, progress=None)
    seconds = time.perf_counter() - start
    timing.write_text(json.dumps({"train_s": seconds}) + "\n")
    model, record = load_model(run_dir, device="cpu")
    return model, record, seconds, False


# -- evaluation -----------------------------------------------------------------------------
def draw_samples(family: str, model, n: int, seed: int) -> tuple[torch.Tensor, float, int]:
    """``(samples in model units, seconds, network evaluations per sample)``."""
    import torch

    from scorelab import baselines, diffusion

    gen = torch.Generator().manual_seed(seed)
    if family == "score":
        res = diffusion.sample(model, n, sampler="heun", nfe=35, process="edm", generator=gen)
    else:
        res = baselines.sample(model, n, generator=gen)
    return res.samples, res.wall_time, res.nfe


def likelihood(
    family: str, model, x: torch.Tensor, bin_width: float | None, args, quick: bool
) -> dict[str, Any]:
    """Log-likelihood (or bounds) of held-out ``x`` in nats per example and bits per dimension.

    For discrete data (``bin_width``) ``x`` is already uniformly dequantized and bits/dim is
    ``-(log p + d log bin_width) / (d ln 2)``, a bound on the discrete NLL (Theis et al. 2016).
    """
    import torch

    from scorelab import diffusion
    from scorelab.diffusion.likelihood import nats_to_bits_per_dim

    d = math.prod(x.shape[1:])

    def bpd(nats: float) -> float:
        return nats_to_bits_per_dim(nats, d, bin_width)

    gen = torch.Generator().manual_seed(args.seed)
    if family == "score":
        tol = 1e-3 if quick else (1e-5 if d <= 16 else 1e-4)
        start = time.perf_counter()
        ll = diffusion.log_likelihood(model, x, exact=d <= 16, rtol=tol, atol=tol, generator=gen)
        mean = ll.mean().item()
        return {"log_likelihood": mean, "log_likelihood_se": ll.std().item() / len(ll) ** 0.5,
                "bits_per_dim": bpd(mean), "likelihood_kind": "exact (probability-flow ODE)"
                + ("" if d <= 16 else ", Hutchinson trace"), "likelihood_s":
                time.perf_counter() - start}  # fmt: skip
    if family == "vae":
        with torch.no_grad():
            elbo = torch.stack([model.elbo(x, gen) for _ in range(16)]).mean(0)
            iwae = model.log_likelihood(x, k=args.iwae_k, generator=gen)
        e, i = elbo.mean().item(), iwae.mean().item()
        return {"elbo": e, "elbo_bits_per_dim": bpd(e), "iwae": i, "iwae_k": args.iwae_k,
                "log_likelihood": i, "log_likelihood_se": iwae.std().item() / len(iwae) ** 0.5,
                "bits_per_dim": bpd(i),
                "likelihood_kind": f"lower bound (IWAE, K={args.iwae_k})"}  # fmt: skip
    return {"likelihood_kind": NO_LIKELIHOOD[family]}


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return (
                f"{v:.{digits}g}"
                if abs(v) < 1
                else f"{v:.{max(digits - 1, 1)}f}".rstrip("0").rstrip(".")
            )
        return f"{v:.2e}"
    return str(v)


def tables(rows: list[dict], data_name: str, s: Setting) -> str:
    """The markdown report: sample quality, then likelihood and cost."""
    from scorelab.metrics import DESCRIPTIONS

    metric_keys = [k for k in DESCRIPTIONS if any(k in r["metrics"] for r in rows)]
    head = ["model", *metric_keys]
    lines = [f"### {data_name}: sample quality against held-out data", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]  # fmt: skip
    for r in rows:
        cells = [r["title"], *(_fmt(r["metrics"].get(k)) for k in metric_keys)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "; ".join(f"{k}: {DESCRIPTIONS[k]}" for k in metric_keys), ""]
    head = ["model", "parameters", "train s", "sample s / 1000", "NFE", "ELBO (nats)",
            "log-lik. (nats)", "bits/dim", "likelihood"]  # fmt: skip
    lines += [f"### {data_name}: likelihood on held-out data and cost", "",
              "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]  # fmt: skip
    for r in rows:
        if r["family"] == "data" or r.get("quality_only"):
            continue
        ll = r.get("log_likelihood")
        se = r.get("log_likelihood_se")
        cells = [r["title"], f"{r['parameters']:,}", _fmt(r["train_s"], 3),
                 _fmt(r["sample_s_per_1000"], 3), str(r["nfe"]), _fmt(r.get("elbo")),
                 "-" if ll is None else f"{_fmt(ll)} ± {_fmt(se, 2)}", _fmt(r.get("bits_per_dim")),
                 r["likelihood_kind"]]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    extra = "".join(f"; {k}: {v}" for k, v in s.family_kwargs.items())
    lines += ["", f"Budget: {s.steps} steps, batch {s.batch_size}, for every model; learning "
              f"rates {', '.join(f'{k} {v:g}' for k, v in s.lr.items())}{extra}; baseline "
              "widths matched to the score model's parameter count."]  # fmt: skip
    return "\n".join(lines) + "\n"


def picture(samples: dict[str, torch.Tensor], held, data_name: str, path: Path) -> None:
    """Samples side by side: scatter plots over held-out data (2-D) or image grids."""
    from matplotlib.figure import Figure

    from scorelab.viz import draw_grid, scatter_2d

    names = list(samples)
    image = held.x.ndim == 4
    fig = Figure(figsize=(2.6 * (len(names) + image), 2.9 if image else 2.8), layout="constrained")
    if image:
        panels = {"data": held.x[:64], **{k: v[:64] for k, v in samples.items()}}
        for i, (name, x) in enumerate(panels.items()):
            draw_grid(fig.add_subplot(1, len(panels), i + 1),
                      to_unit_interval(x.clamp(-1, 1), held.normalization), nrow=8,
                      title=TITLES[name])  # fmt: skip
    else:
        ref = held.decode(held.x[:2000])
        lo, hi = ref.amin(0) - 0.5, ref.amax(0) + 0.5
        for i, name in enumerate(names):
            ax = fig.add_subplot(1, len(names), i + 1)
            pts = held.decode(samples[name][:2000])
            scatter_2d(ax, pts, ref, TITLES[name])
            ax.set_xlim(lo[0].item(), hi[0].item())
            ax.set_ylim(lo[1].item(), hi[1].item())
            ax.tick_params(labelsize=6)
            ax.get_legend().remove()
    fig.suptitle(
        f"{data_name}: samples of each family, same budget"
        + ("" if image else " (grey: held-out data)")
    )
    fig.savefig(path, dpi=80)


def run(args: argparse.Namespace) -> int:
    import torch

    from scorelab.data import TOY_NAMES, quantization_step
    from scorelab.metrics import evaluate, train_classifier
    from scorelab.nets import num_parameters
    from scorelab.progress import progress

    data_name = args.data
    if data_name not in TOY_NAMES and data_name != "digits":
        fail(f"--data {data_name!r} has no held-out split; use digits or a toy set")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in FAMILIES]
    if bad or not models:
        fail(f"--models must list families from {', '.join(FAMILIES)}; got {args.models!r}")
    for name in ("ll_examples", "iwae_k"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    # a folder of an earlier compare is reused: its finished runs with the same settings load
    folder = out_dir(args.out or f"scorelab-out/compare-{data_name}", "compare", args.overwrite,
                     reuse=True)  # fmt: skip
    try:
        s = setting_for(data_name, args)
        cfgs = plan(data_name, s, folder, models, args)
    except ValueError as err:
        fail(err)
    ll_n = min(args.ll_examples, 20) if args.quick else args.ll_examples
    iwae_k = min(args.iwae_k, 20) if args.quick else args.iwae_k
    args.iwae_k = iwae_k

    stages = progress(2 * len(models) + 2, "compare", unit="stage")
    rows: list[dict] = []
    samples: dict[str, torch.Tensor] = {}
    trained: dict[str, tuple] = {}
    for family, cfg in cfgs.items():
        stages.set_postfix_str(f"train {family}")
        try:
            trained[family] = train_or_load(cfg, args.retrain)
        except ValueError as err:
            stages.close()
            fail(err)
        how = "loaded" if trained[family][3] else "trained"
        stages.write(
            f"{family}: {how} {cfg.out} ({num_parameters(trained[family][0]):,} parameters)"
        )
        stages.update(1)

    record = next(iter(trained.values()))[1]
    train_data = load_run_data(record)
    held = load_run_data(record, heldout=True)
    bin_width = quantization_step(train_data.x)
    classifier = None
    if train_data.labels is not None and held.x.ndim == 4:
        stages.set_postfix_str("feature classifier")
        classifier = train_classifier(
            train_data.x, train_data.labels, steps=50 if args.quick else 500,
            generator=torch.Generator().manual_seed(args.seed),
        )  # fmt: skip
    stages.update(1)

    gen = torch.Generator().manual_seed(args.seed + 7)
    ll_x = held.x[torch.randperm(len(held.x), generator=gen)[:ll_n]]
    if bin_width is not None:  # the same uniform dequantization for every model
        ll_x = ll_x + bin_width * (torch.rand(ll_x.shape, generator=gen) - 0.5)
    m = min(s.n_samples, len(train_data.x) // 2)  # as many as each model's samples
    floor = evaluate(train_data.x[:m], held.x, train=train_data.x[m:], classifier=classifier,
                     generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    rows.append({"family": "data", "title": "data (train split, floor)", "metrics": floor})
    for family, (model, _, train_s, _loaded) in trained.items():
        stages.set_postfix_str(f"evaluate {family}")
        x, secs, nfe = draw_samples(family, model, s.n_samples, args.seed)
        samples[family] = x
        metrics = evaluate(x, held.x, train=train_data.x, classifier=classifier,
                           generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
        row = {"family": family, "title": TITLES[family], "parameters": num_parameters(model),
               "train_s": train_s, "sample_s_per_1000": 1000 * secs / s.n_samples, "nfe": nfe,
               "metrics": metrics}  # fmt: skip
        row.update(likelihood(family, model, ll_x, bin_width, args, args.quick))
        rows.append(row)
        if family == "vae":  # what VAE pictures usually show: E[x | z], not draws of p(x | z)
            gen = torch.Generator().manual_seed(args.seed)
            start = time.perf_counter()
            with torch.no_grad():
                means = model.sample(s.n_samples, generator=gen, mean=True).cpu()
            secs = time.perf_counter() - start
            samples["vae_mean"] = means
            metrics = evaluate(means, held.x, train=train_data.x, classifier=classifier,
                               generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
            rows.append({**row, "family": "vae_mean", "title": TITLES["vae_mean"],
                         "metrics": metrics, "sample_s_per_1000": 1000 * secs / s.n_samples,
                         "quality_only": True})  # fmt: skip
        stages.update(1)
    stages.set_postfix_str("report")
    text = tables(rows, data_name, s)
    held_kind = "the test split" if data_name == "digits" else "a fresh draw"
    notes = [
        f"held-out data: {len(held.x)} examples ({held_kind}); "
        f"likelihoods on {len(ll_x)} of them"
        + ("" if bin_width is None else f", uniformly dequantized (bin width {bin_width:g} in "
           "model units)"),
        "log-likelihoods are of model units (the normalized data), nats per example",
        f"the floor row evaluates {m} training examples as if they were samples (memorization "
        "against the rest of the training split); sample-set distances are biased upward at "
        "small sample sizes, so compare rows of equal size",
        "GAN parameters count the generator and the discriminator",
    ]  # fmt: skip
    text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    (folder / "compare.md").write_text(text)
    result = {"data": data_name, "setting": s.__dict__, "quick": args.quick, "rows": rows,
              "notes": notes, "configs": {k: c.to_dict() for k, c in cfgs.items()}}  # fmt: skip
    (folder / "compare.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    picture(samples, held, data_name, folder / "compare.png")
    write_run_record(folder, "compare", vars(args) | {"run": None})
    stages.update(1)
    stages.close()
    print(text)
    print(f"wrote {folder}/compare.md, compare.json, compare.png; runs in {folder}/<family>")
    return 0
