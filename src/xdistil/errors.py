"""The one exception type users see: a one-line message naming the file, field or line at fault."""

from __future__ import annotations

import errno
import os
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


# a write refused for want of space: a full disk, a quota, a file size limit (RLIMIT_FSIZE)
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NO_SPACE_TEXTS = tuple(os.strerror(code) for code in NO_SPACE_ERRNOS) + tuple(f"os error {code})" for code in NO_SPACE_ERRNOS)


def out_of_space(err: BaseException) -> bool:
    """Whether `err`, or an error it was raised from, is a write that ran out of space (libraries that write in
    C or Rust, such as safetensors and onnx, report it in their message rather than as an OSError)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in NO_SPACE_ERRNOS:
            return True
        if any(text in str(err) for text in _NO_SPACE_TEXTS):
            return True
        err = err.__cause__ or err.__context__
    return False
