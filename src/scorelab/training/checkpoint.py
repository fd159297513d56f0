"""Checkpoints: safetensors tensors + JSON, written atomically with checksums; nothing pickled.

A checkpoint is a folder ``checkpoints/step-00001000/`` holding ``*.safetensors`` files, a
``meta.json`` and a ``manifest.json`` with the SHA-256 of every file. It is written under a
temporary name, flushed to disk, then renamed, and ``checkpoints/latest`` is replaced
atomically, so a process killed at any moment leaves the last complete checkpoint intact.
Loading verifies the checksums and falls back to the newest intact checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file of this process, flush it to
    disk and rename it over ``path``: a process killed midway, or another process (a torchrun
    rank) writing the same file at once, never leaves half a file at ``path``; a failed write
    leaves the earlier file and no temporary one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            write(f)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as JSON at ``path``, written atomically (``write_atomic``)."""
    text = json.dumps(obj, indent=2, default=str) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def save_checkpoint(
    run_dir: Path, step: int, tensors: dict[str, dict[str, Tensor]], meta: dict, keep: int = 2
) -> Path:
    """Save ``{file stem: {name: tensor}}`` and ``meta`` as checkpoint ``step``; keep ``keep``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp, final = root / f".{name}.tmp", root / name
    for stale in root.glob(".step-*"):  # left by a process killed while writing or pruning
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    for stem, group in tensors.items():
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in group.items()},
            tmp / f"{stem}.safetensors",
        )
    (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=2, default=str))
    manifest = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    for p in tmp.iterdir():
        _fsync(p)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync(root)
    write_json_atomic(root / "latest.json", {"checkpoint": name})
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
        # renamed first (atomic), so a kill during the removal never leaves a half-deleted
        # folder under a checkpoint's name
        doomed = root / f".{old.name}.del"
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return final


def verify(folder: Path) -> str | None:
    """``None`` if every file matches the manifest, else what is wrong."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        return f"no readable manifest ({err})"
    for fname, digest in manifest.items():
        p = folder / fname
        if not p.exists():
            return f"{fname} is missing"
        if _sha256(p) != digest:
            return f"{fname} does not match its checksum (truncated or modified)"
    return None


def load_checkpoint(run_dir: Path) -> tuple[dict[str, dict[str, Tensor]], dict, list[str]]:
    """The newest intact checkpoint of ``run_dir``: ``(tensors, meta, skipped)`` where
    ``skipped`` says which newer checkpoints were damaged and why."""
    root = Path(run_dir) / "checkpoints"
    candidates = sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True)
    skipped = []
    for folder in candidates:
        problem = verify(folder)
        if problem is not None:
            skipped.append(f"{folder.name}: {problem}")
            continue
        try:
            tensors = {p.stem: load_file(p) for p in folder.glob("*.safetensors")}
            meta = json.loads((folder / "meta.json").read_text())
        except (SafetensorError, OSError, ValueError) as err:
            skipped.append(f"{folder.name}: unreadable ({err})")
            continue
        return tensors, meta, skipped
    why = "; ".join(skipped) if skipped else "there are none"
    raise ValueError(f"no intact checkpoint in {root}: {why}; start a new run instead")


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split an optimizer state dict into tensors (safetensors) and JSON-safe values."""
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict):
    """Inverse of ``optimizer_to_tensors``: load the state into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in {**tensors, **meta["scalars"]}.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
