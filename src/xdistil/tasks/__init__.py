"""Tasks by `task` name: classification and tagging."""

from __future__ import annotations

from xdistil.tasks.base import Task
from xdistil.tasks.classification import Classification
from xdistil.tasks.tagging import Tagging

TASKS: dict[str, Task] = {task.name: task for task in (Classification(), Tagging())}


def get_task(name: str) -> Task:
    """The task object for a config's `task`."""
    return TASKS[name]
