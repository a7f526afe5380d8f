"""The one exception type users see: a one-line message naming the file, field or line at fault."""

from __future__ import annotations

import signal


class XDistilError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was, so it unwinds like Ctrl-C (atomic writes finish or are discarded)."""


_received: list[int] = []  # the interrupt signals seen by `on_signal`, in order


def on_signal(signum: int, frame) -> None:
    """Handler for SIGINT and SIGTERM: remember the signal, then raise where the process was.

    Remembering matters because a library may catch the raised exception and re-raise it as another
    type (safetensors' load_file turns a Ctrl-C into a ValueError); `raise_if_interrupted` recovers it."""
    _received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def signals_received() -> list[int]:
    """The interrupt signals `on_signal` has seen so far (empty where it is not installed)."""
    return list(_received)


def raise_if_interrupted(seen: int) -> None:
    """Re-raise an interrupt that arrived after `seen` signals and was swallowed into another exception."""
    if len(_received) > seen:
        raise Terminated() if _received[-1] == signal.SIGTERM else KeyboardInterrupt()
