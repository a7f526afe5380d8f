"""Atomic writes: a file or folder appears whole under its final name or not at all, so a killed run never leaves half a result.

Every write goes through a temporary that is removed when the write fails (a full disk, an interrupt), so a
failed write never leaves `*.tmp` files behind to keep the disk full. Torch-free: the ONNX runtime uses it too.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` into a temporary beside `path`, then rename it into place; the temporary is removed if
    the write fails (full disk, interrupt) and the error goes on."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: two writers never share a temporary
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: dict) -> None:
    """Write JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=2))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


@contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """An empty sibling folder to write into; when the block ends it takes the place of `folder`, and when the
    block fails it is removed. Its name is the writing process's own (`.NAME.PID.tmp`), so nothing of anybody
    else's is ever deleted; those a killed process left are swept (their process is gone)."""
    for stale in folder.parent.glob(f".{folder.name}.*.tmp"):
        pid = stale.name[len(folder.name) + 2 : -4]
        if stale.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
