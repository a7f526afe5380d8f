"""Atomic writes: a file or folder appears whole under its final name or not at all, so a killed run never leaves half a result."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def atomic_write_json(path: Path, data: dict) -> None:
    """Write JSON to a temporary file and rename it into place."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: two writers never share a temporary
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def staging_folder(folder: Path) -> Path:
    """An empty sibling folder to write into before `replace_folder` moves it to `folder`."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def replace_folder(tmp: Path, folder: Path) -> None:
    """Put a finished staging folder in place of `folder`."""
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
