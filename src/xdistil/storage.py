"""Reading safetensors files (stage checkpoints, cache chunks) so that an interrupt is never taken for damage."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from xdistil.errors import raise_if_interrupted, signals_received


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
