"""Atomic writes: a file or folder appears whole under its final name or not at all, so a killed run never leaves half a result."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from xdistil.errors import raise_if_interrupted, signals_received


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


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """A safetensors file's tensors and metadata, or None when it is missing or unreadable.

    A Ctrl-C while reading surfaces from safetensors as a ValueError; it is re-raised as the interrupt,
    so an interrupted read is never mistaken for a damaged file (which the caller would redo)."""
    if not path.is_file():
        return None
    seen = len(signals_received())
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError):
        raise_if_interrupted(seen)
        return None
    return tensors, meta
