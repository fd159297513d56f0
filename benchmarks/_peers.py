"""Optional diffusion peers for ``benchmarks/samplers.py``: diffusers and k-diffusion.

Each loader returns the module, or ``None`` after printing why it is skipped, never raising.

k-diffusion's package ``__init__`` imports torchvision (through ``k_diffusion.utils``), which
has no CPU build here. Only ``k_diffusion/sampling.py`` is needed, and the only thing it takes
from ``utils`` is ``append_dims``. So the file is loaded on its own with
``importlib.util.spec_from_file_location`` as ``_kdiffusion.sampling`` inside a synthetic
package ``_kdiffusion`` whose ``utils`` is a stub holding a copy of ``append_dims``; the
package's ``__init__`` and the real ``utils.py`` never run.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path
from types import ModuleType

from torch import Tensor

KDIFF_PKG = "_kdiffusion"
INSTALL = {
    "diffusers": "pip install --no-deps diffusers huggingface-hub (+ regex, safetensors, httpx2)",
    "k-diffusion": "pip install --no-deps k-diffusion torchsde torchdiffeq trampoline",
}


def _skip(name: str, err: BaseException) -> None:
    print(f"skipping {name}: {type(err).__name__}: {err}; install with {INSTALL[name]}")


def version(dist: str) -> str:
    """Installed version of a distribution, or "not installed"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load_diffusers() -> ModuleType | None:
    """``import diffusers`` (its schedulers only), or ``None`` with a message."""
    try:
        return importlib.import_module("diffusers")
    except Exception as err:  # ImportError, or a broken optional dependency
        _skip("diffusers", err)
        return None


def _append_dims(x: Tensor, target_dims: int) -> Tensor:
    """Copy of ``k_diffusion.utils.append_dims``: trailing singleton dims up to ``target_dims``."""
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}")
    return x[(..., *(None,) * missing)]


def _kdiffusion_root() -> Path:
    spec = importlib.util.find_spec("k_diffusion")  # finds the folder, runs no __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'k_diffusion'")
    return Path(next(iter(spec.submodule_search_locations)))


def load_kdiffusion_sampling() -> ModuleType | None:
    """``k_diffusion/sampling.py`` loaded by file with a stub ``utils``, or ``None``."""
    if f"{KDIFF_PKG}.sampling" in sys.modules:
        return sys.modules[f"{KDIFF_PKG}.sampling"]
    try:
        root = _kdiffusion_root()
        package = types.ModuleType(KDIFF_PKG)
        package.__path__ = []  # a package, but nothing is found in it by the import system
        utils = types.ModuleType(f"{KDIFF_PKG}.utils")
        utils.append_dims = _append_dims
        package.utils = utils
        sys.modules.update({KDIFF_PKG: package, f"{KDIFF_PKG}.utils": utils})
        spec = importlib.util.spec_from_file_location(f"{KDIFF_PKG}.sampling", root / "sampling.py")
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {root / 'sampling.py'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)  # imports torchsde, torchdiffeq, scipy, tqdm
        return module
    except Exception as err:  # ImportError, or an incompatible k-diffusion version
        for name in (f"{KDIFF_PKG}.sampling", f"{KDIFF_PKG}.utils", KDIFF_PKG):
            sys.modules.pop(name, None)
        _skip("k-diffusion", err)
        return None
