"""Who may write in a run folder: its marker says xdistil made it, its lock says which one process runs there.

Torch-free, so the command line refuses a folder in use before it imports anything heavy.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from filelock import FileLock, Timeout

from xdistil.atomic import atomic_write_json
from xdistil.errors import XDistilError

MARKER = ".xdistil-run"
LOCK = ".xdistil-lock"  # held (flock) by the one process that runs in the folder; the marker names its PID


def is_run_folder(out: Path) -> bool:
    """True when xdistil made `out`: only its marker says so. Entry names never do - a user's folder may hold
    a `cache/` or a `report.md` of its own, and `--overwrite` would delete them."""
    return (out / MARKER).is_file()


def mark_run_folder(out: Path) -> None:
    """Make `out` (new or empty) a run folder before anything else is put in it (the benchmarks link a
    shared teacher and cache into a folder before its first run); a run folder is left as it is."""
    if out.exists() and not out.is_dir():
        raise XDistilError(f"{out}: --out names an existing file; expected a folder for the run")
    out.mkdir(parents=True, exist_ok=True)
    if is_run_folder(out):
        return
    if any(out.iterdir()):
        raise XDistilError(
            f"{out}: folder is not empty and is not an xdistil run folder (no {MARKER} marker); "
            "nothing was deleted - choose a new or empty folder for --out"
        )
    atomic_write_json(out / MARKER, {"xdistil_run": 1})


def _in_use(out: Path) -> XDistilError:
    try:
        holder = json.loads((out / MARKER).read_text(encoding="utf-8"))
        who = f"process {int(holder['pid'])} (since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        who = "another process"
    return XDistilError(f"{out}: the run folder is in use by {who}; nothing was changed - wait for it to finish, or choose another --out")


def _lock(out: Path) -> FileLock:
    return FileLock((out / LOCK).resolve(), timeout=0, thread_local=False, is_singleton=True)


def lock_run_folder(out: Path) -> FileLock:
    """Take the folder's lock, or refuse at once naming the holder's PID: two processes in one folder would both
    train and read each other's half-written checkpoints. Within one process the lock is shared and counted (a
    second Run on the same folder takes it again); each taker releases it once."""
    lock = _lock(out)
    try:
        lock.acquire()
    except Timeout:
        raise _in_use(out) from None
    except OSError as err:
        raise XDistilError(f"{out / LOCK}: cannot take the run folder's lock ({err.strerror or err})") from None
    if lock.lock_counter == 1:
        atomic_write_json(out / MARKER, {"xdistil_run": 1, "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return lock


def refuse_if_in_use(out: Path) -> None:
    """Refuse at once when another process holds the folder's lock (a check before the slow start of a run;
    the run itself takes the lock when it prepares the folder)."""
    if not (out / LOCK).is_file():
        return
    lock = _lock(out)
    try:
        lock.acquire()
    except Timeout:
        raise _in_use(out) from None
    except OSError:
        return  # the run's own attempt reports it
    lock.release()
