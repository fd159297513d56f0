"""diffusers models as scorelab denoisers, and scorelab denoisers as diffusers models.

A diffusers ``UNet2DModel`` predicts, at integer timestep ``t`` of a discrete VP schedule and
input ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``, the noise ``eps``, the
velocity ``v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0`` or ``x_0`` itself
(``prediction_type``). In sigma-space (``x = x_t / sqrt(alpha_bar_t)``, ``sigma_t =
sqrt((1 - alpha_bar_t) / alpha_bar_t)``) that is a denoiser ``D(x, sigma)`` with the VP input
``x_t = x / sqrt(1 + sigma^2)`` and a fractional timestep ``t(sigma)`` interpolated in
``log sigma`` (``schedule.DiscreteSchedule``); Karras et al. 2022, Table 1. diffusers is
imported only to load a saved folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scorelab._utils import append_dims
from scorelab.interop.schedule import (
    DiscreteSchedule,
    check_prediction_type,
    read_scheduler_config,
)
from scorelab.nets._common import check_x
from scorelab.nets.denoisers import Denoiser, _check_sigma

_CONDITIONAL = ("UNet2DConditionModel", "StableDiffusionPipeline", "StableDiffusionXLPipeline")
_OUT_OF_SCOPE = (
    "text-conditioned UNet2DConditionModel models (Stable Diffusion and the like) are out of "
    "scope for scorelab's adapter: it reads UNet2DModel, unconditional or class-conditional"
)


def _vp_output_to_denoised(out: Tensor, x: Tensor, sigma: Tensor, prediction_type: str) -> Tensor:
    """``D(x, sigma)`` from the network output at ``x_t = x / sqrt(1 + sigma^2)``: epsilon
    ``D = x - sigma eps``; v ``D = x / (1 + sigma^2) - sigma v / sqrt(1 + sigma^2)``; sample
    ``D = out``."""
    s = append_dims(sigma, x.ndim)
    if prediction_type == "epsilon":
        return x - s * out
    if prediction_type == "v_prediction":
        return (x - s * (1 + s**2).sqrt() * out) / (1 + s**2)
    return out


def _denoised_to_vp_output(denoised: Tensor, x: Tensor, sigma: Tensor, prediction_type: str):
    """The inverse of ``_vp_output_to_denoised``: the output a diffusers model would give."""
    s = append_dims(sigma, x.ndim)
    if prediction_type == "epsilon":
        return (x - denoised) / s
    if prediction_type == "v_prediction":  # v = sqrt(ab) eps - sqrt(1 - ab) x0
        return ((x - denoised) / s - s * denoised) / (1 + s**2).sqrt()
    return denoised


class DiffusersDenoiser(Denoiser):
    """A diffusers ``UNet2DModel`` as a scorelab denoiser ``D(x, sigma, cond=None)``.

    ``D`` calls ``unet(x / sqrt(1 + sigma^2), t(sigma), class_labels=cond)`` with ``t(sigma)``
    the fractional timestep of ``sigma`` on the discrete schedule (``DiscreteSchedule``) and
    turns the output into ``E[x_0 | x]`` by ``prediction_type``. ``x`` of any floating dtype is
    cast to the network's and the result back. ``sigma_min``/``sigma_max`` are the schedule's
    range; ``event_shape`` is ``(in_channels, H, W)``. A class-conditional model
    (``num_class_embeds``) needs ``cond``, or ``null_class`` (the label it was trained with for
    "no class", for classifier-free guidance) when ``cond`` is ``None``.
    """

    name = "diffusers"

    def __init__(
        self,
        unet: nn.Module,
        schedule: DiscreteSchedule,
        prediction_type: str = "epsilon",
        *,
        null_class: int | None = None,
        quantize: bool = False,
    ) -> None:
        super().__init__(unet)
        self.schedule = schedule
        self.prediction_type = check_prediction_type(prediction_type)
        self.null_class = null_class
        self.quantize = bool(quantize)  # round t(sigma) to the nearest trained timestep
        config = getattr(unet, "config", {})
        size = config.get("sample_size")
        channels = config.get("in_channels")
        if size is None or channels is None:
            raise ValueError(
                f"{type(unet).__name__} has no config.sample_size / config.in_channels; "
                "from_diffusers needs a diffusers UNet2DModel (or a model with that config)"
            )
        hw = (size, size) if isinstance(size, int) else tuple(size)
        self.event_shape = (int(channels), *(int(v) for v in hw))
        embeds = config.get("num_class_embeds")
        self._num_classes = None if embeds is None else int(embeds)

    @property
    def num_classes(self) -> int | None:
        """Number of class labels the network accepts (``None``: unconditional)."""
        return self._num_classes

    @property
    def sigma_min(self) -> float:
        return self.schedule.sigma_min

    @property
    def sigma_max(self) -> float:
        return self.schedule.sigma_max

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def timestep(self, sigma: Tensor) -> Tensor:
        """The network's (fractional) timestep ``t(sigma)``, float64 on the CPU
        (``DiscreteSchedule.sigma_to_t``; rounded with ``quantize``)."""
        return self.schedule.sigma_to_t(sigma, self.quantize)

    def _labels(self, cond: Tensor | None, batch: int, device: torch.device) -> Tensor | None:
        if self._num_classes is None:
            if cond is not None:
                raise ValueError("this diffusers model is unconditional (no num_class_embeds): "
                                 "drop cond / --class")  # fmt: skip
            return None
        if cond is None:
            if self.null_class is None:
                raise ValueError(
                    "this diffusers model is class-conditional (num_class_embeds = "
                    f"{self._num_classes}) and has no 'no class' label: pass cond (class "
                    "labels), or null_class= the label it was trained with for 'no class'"
                )
            cond = torch.full((batch,), self.null_class, dtype=torch.long)
        return torch.as_tensor(cond, device=device).long().reshape(-1).expand(batch)

    def _denoise(self, x: Tensor, sigma: Tensor, cond: Tensor | None) -> Tensor:
        dtype = self.dtype
        x_t = x / append_dims((1 + sigma**2).sqrt(), x.ndim)  # VP input sqrt(alpha_bar) x
        t = self.timestep(sigma).to(device=x.device, dtype=torch.float32)
        labels = self._labels(cond, x.shape[0], x.device)
        out = self.net(x_t.to(dtype), t, class_labels=labels)
        out = getattr(out, "sample", out[0] if isinstance(out, tuple) else out).to(x.dtype)
        if out.shape != x.shape:
            raise ValueError(
                f"the diffusers model returns shape {tuple(out.shape)} for input "
                f"{tuple(x.shape)}; scorelab needs an output shaped like the input (a model "
                "with learned variance, out_channels = 2 x in_channels, is not supported)"
            )
        return _vp_output_to_denoised(out, x, sigma, self.prediction_type)

    def config(self) -> dict[str, Any]:
        """Description of the adapter (a diffusers model is saved with ``save_pretrained``)."""
        return {
            "parameterization": self.name,
            "net": type(self.net).__name__,
            "prediction_type": self.prediction_type,
            "num_train_timesteps": self.schedule.num_train_timesteps,
        }


def is_diffusers_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder saved by diffusers' ``save_pretrained``: a pipeline
    (``model_index.json``) or a model (``config.json`` with ``_class_name``)."""
    path = Path(path)
    if (path / "model_index.json").is_file():
        return True
    try:
        return "_class_name" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return False


def _import_diffusers():
    try:
        import diffusers
    except ImportError as err:
        raise ImportError(
            "loading a diffusers folder needs diffusers: pip install 'scorelab[diffusers]' "
            "(or pip install diffusers)"
        ) from err
    return diffusers


def _load_folder(path: Path) -> tuple[nn.Module, object]:
    """``(model, scheduler config or None)`` from a pipeline or model folder."""
    if (path / "model_index.json").is_file():
        index = json.loads((path / "model_index.json").read_text())
        unet_entry = index.get("unet")
        if not isinstance(unet_entry, list) or len(unet_entry) != 2:
            raise ValueError(
                f"{path}/model_index.json names no unet; scorelab reads pipelines with a "
                f"UNet2DModel in unet/ and a scheduler in scheduler/ (this is a "
                f"{index.get('_class_name')})"
            )
        if unet_entry[1] in _CONDITIONAL or index.get("_class_name") in _CONDITIONAL:
            raise ValueError(f"{path}: {_OUT_OF_SCOPE}")
        model = _load_model(path / "unet")
        scheduler = path / "scheduler" if (path / "scheduler").is_dir() else None
        return model, scheduler
    model = _load_model(path)
    return model, path if (path / "scheduler_config.json").is_file() else None


def _load_model(path: Path) -> nn.Module:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{path} is not a diffusers folder: no readable config.json ({err}); pass a folder "
            "saved with save_pretrained (a pipeline with unet/ and scheduler/, or a model)"
        ) from err
    name = config.get("_class_name")
    if name in _CONDITIONAL:
        raise ValueError(f"{path}: {_OUT_OF_SCOPE}")
    if name != "UNet2DModel":
        raise ValueError(
            f"{path} holds a {name}; scorelab's diffusers adapter reads UNet2DModel folders"
        )
    # low_cpu_mem_usage=False: the plain load (the default asks for the accelerate package)
    return _import_diffusers().UNet2DModel.from_pretrained(path, low_cpu_mem_usage=False)


def from_diffusers(
    model: object,
    scheduler: object = None,
    *,
    prediction_type: str | None = None,
    null_class: int | None = None,
    quantize: bool = False,
    device: torch.device | str | None = None,
) -> DiffusersDenoiser:
    """A diffusers ``UNet2DModel`` as a scorelab denoiser ``D(x, sigma, cond)`` (see
    ``DiffusersDenoiser``), in eval mode.

    ``model``: a ``UNet2DModel``, a pipeline with ``.unet`` and ``.scheduler``, or a folder saved
    with ``save_pretrained`` (a pipeline with ``unet/`` and ``scheduler/``, or a model folder).
    ``scheduler`` (needed when the model comes without one): a diffusers scheduler, its config
    dict, or a path to its ``scheduler_config.json``; its betas (``beta_schedule``,
    ``trained_betas``) or ``alphas_cumprod`` give ``sigma_t = sqrt((1 - alpha_bar_t) /
    alpha_bar_t)`` and its ``prediction_type`` the output (``prediction_type=`` overrides).
    """
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_dir():
            raise ValueError(f"{path} is not a folder; pass a folder saved with save_pretrained")
        model, found = _load_folder(path)
        scheduler = found if scheduler is None else scheduler
    elif hasattr(model, "unet") and hasattr(model, "scheduler"):  # a pipeline object
        scheduler = model.scheduler if scheduler is None else scheduler
        model = model.unet
    if type(model).__name__ in _CONDITIONAL:
        raise ValueError(_OUT_OF_SCOPE)
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model must be a diffusers UNet2DModel, a pipeline or a saved folder; got "
            f"{type(model).__name__}"
        )
    if scheduler is None:
        raise ValueError(
            "no scheduler: the model's noise schedule is in its scheduler, which this model "
            "came without; pass scheduler= (a diffusers scheduler, its config dict, or a "
            "scheduler_config.json path)"
        )
    config = read_scheduler_config(scheduler)
    pred = prediction_type or config.get("prediction_type", "epsilon")
    wrapped = DiffusersDenoiser(model, DiscreteSchedule.from_scheduler(config), pred,
                                null_class=null_class, quantize=quantize)  # fmt: skip
    if device is not None:
        wrapped = wrapped.to(device)
    return wrapped.eval().requires_grad_(False)


# -- scorelab denoisers in diffusers -------------------------------------------------------------
class _Config(dict):
    """A dict whose keys read as attributes (diffusers reads ``model.config.sample_size``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as err:
            raise AttributeError(name) from err


class _Output:
    """What diffusers reads from a model call: ``.sample`` (and ``[0]``)."""

    def __init__(self, sample: Tensor) -> None:
        self.sample = sample

    def __getitem__(self, i: int) -> Tensor:
        if i != 0:
            raise IndexError(i)
        return self.sample


class ScorelabDiffusersModel(nn.Module):
    """A scorelab denoiser as a diffusers model ``model(sample, timestep, class_labels).sample``.

    At timestep ``t`` (integer or fractional) of the scheduler's discrete schedule, ``sigma =
    sigma(t)`` (``DiscreteSchedule.t_to_sigma``); the input ``x_t`` is ``x = x_t sqrt(1 +
    sigma^2)`` in sigma-space, and the output is the denoiser's ``D(x, sigma, cond)`` in the
    scheduler's ``prediction_type`` (``eps = (x - D) / sigma``; ``v = (eps - sigma D) /
    sqrt(1 + sigma^2)``; ``sample = D``). ``config`` carries ``sample_size``/``in_channels``
    for image denoisers, and the pipelines read ``dtype`` and ``device``.
    """

    def __init__(self, denoiser: Callable[..., Tensor], schedule: DiscreteSchedule,
                 prediction_type: str, event_shape: tuple[int, ...] | None,
                 dtype: torch.dtype, device: torch.device) -> None:  # fmt: skip
        super().__init__()
        self.denoiser = denoiser  # a module's weights are found by diffusion.model_device
        self.schedule = schedule
        self.prediction_type = check_prediction_type(prediction_type)
        self._dtype, self._device = dtype, device
        config: dict[str, Any] = {"prediction_type": prediction_type}
        if event_shape is not None and len(event_shape) == 3:
            config.update(in_channels=event_shape[0], out_channels=event_shape[0],
                          sample_size=list(event_shape[1:]) if event_shape[1] != event_shape[2]
                          else event_shape[1])  # fmt: skip
        num_classes = getattr(denoiser, "num_classes", None)
        if num_classes is not None:
            config["num_class_embeds"] = num_classes
        self.config = _Config(config)

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def forward(self, sample: Tensor, timestep: Tensor | float | int,
                class_labels: Tensor | None = None, return_dict: bool = True) -> Any:  # fmt: skip
        """The output a diffusers model with this ``prediction_type`` gives at ``timestep``."""
        x_t = check_x(sample, "sample")
        t = torch.as_tensor(timestep, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        sigma = self.schedule.t_to_sigma(t).to(x_t)  # [batch]
        x = x_t * append_dims((1 + sigma**2).sqrt(), x_t.ndim)
        sigma = _check_sigma(sigma, x)
        if class_labels is None:
            denoised = self.denoiser(x, sigma)
        else:
            denoised = self.denoiser(x, sigma, class_labels)
        out = _denoised_to_vp_output(denoised.to(x), x, sigma, self.prediction_type)
        return _Output(out) if return_dict else (out,)


def as_diffusers_model(
    denoiser: object, scheduler: object, *, shape: tuple[int, ...] | None = None
) -> ScorelabDiffusersModel:
    """Any scorelab denoiser ``D(x, sigma, cond)`` (a trained run's model, a ``from_diffusers``
    adapter, a known density's exact ``denoise``) as a model that diffusers' schedulers and
    DDPM/DDIM pipelines call as ``model(x_t, t).sample``, predicting in the scheduler's
    ``prediction_type`` on its schedule (``ScorelabDiffusersModel``).

    ``scheduler``: a diffusers scheduler, its config dict or its ``scheduler_config.json``.
    ``shape``: the event shape, if the denoiser has no ``event_shape`` (pipelines read it as
    ``config.in_channels`` and ``config.sample_size``).
    """
    from scorelab.diffusion.api import as_denoiser, model_device

    base = as_denoiser(denoiser)
    config = read_scheduler_config(scheduler)
    pred = config.get("prediction_type", "epsilon")
    if shape is None:
        shape = getattr(denoiser, "event_shape", None)
    device = model_device(denoiser) or torch.device("cpu")
    params = next(denoiser.parameters(), None) if isinstance(denoiser, nn.Module) else None
    dtype = getattr(denoiser, "dtype", None) or (params.dtype if params is not None else None)
    dtype = dtype if isinstance(dtype, torch.dtype) else torch.float32
    event = None if shape is None else tuple(int(v) for v in shape)
    return ScorelabDiffusersModel(base, DiscreteSchedule.from_scheduler(config), pred, event,
                                  dtype, device)  # fmt: skip
