"""Progress bars with an ETA and the run's console log (rich)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

import xdistil.distributed as distributed

console = Console(stderr=True, soft_wrap=True)
# the step a run is in, for the message an interrupted command prints
current_step = "starting"


def enter_step(name: str) -> None:
    """Record the step now running (what `interrupted: <step>` names)."""
    global current_step
    current_step = name


def log(message: str) -> None:
    """One line of run log on stderr (from the main process only, when several run)."""
    if distributed.is_main():
        console.print(message, highlight=False, markup=False)


@contextmanager
def bar(total: int, description: str) -> Iterator[Progress]:
    """A progress bar with count, elapsed time and ETA; the task id is always 0. XDISTIL_QUIET=1 hides it."""
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        console=console,
        transient=not console.is_terminal,
        disable=os.environ.get("XDISTIL_QUIET") == "1" or not distributed.is_main(),
    )
    with progress:
        progress.add_task(description, total=total, info="")
        yield progress
