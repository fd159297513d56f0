"""Output folders: one folder holds one run. A command claims its folder before writing: a
folder that already holds files is refused unless the caller asked to overwrite it, and then
only cleared if it looks like something scorelab wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MARKERS = {  # file -> a key scorelab always writes into it
    "run.json": "command",  # every CLI command's record
    "config.json": "train",  # a training run
    "result.json": "claim",  # a demo
}


def is_output(folder: Path) -> bool:
    """Whether ``folder`` looks like scorelab's output: one of ``MARKERS`` with its key."""
    for name, key in MARKERS.items():
        try:
            if key in json.loads((folder / name).read_text()):
                return True
        except (OSError, ValueError, TypeError):
            continue
    return False


def _shown(names: list[str], limit: int = 6) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def claim(folder: str | Path, overwrite: bool, *, name: str, fix: str, flag: str) -> list[str]:
    """Make ``folder`` an empty folder for one run and return what was removed from it.

    A folder holding files raises ``ValueError("{name} {folder} already holds ...; {fix}")``
    unless ``overwrite``; then its contents are removed if ``is_output`` says scorelab wrote
    it, else ``ValueError`` naming ``flag`` (the caller's word for overwriting)."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {path} is a file, not a folder; choose another folder")
    entries = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if entries and not overwrite:
        raise ValueError(f"{name} {path} already holds {_shown(entries)}; {fix}")
    if entries and not is_output(path):
        raise ValueError(
            f"{flag} refuses to clear {path}: it does not look like a scorelab output (no "
            f"{', '.join(MARKERS)} written by scorelab); empty it yourself or choose another folder"
        )
    for entry in entries:
        p = path / entry
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return entries
