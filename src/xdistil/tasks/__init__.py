"""Tasks by `task` name: classification and tagging, and any a user registers.

Importing the package is cheap: the descriptions (`description.py`) need no torch; a task's heavy part
(reading its corpus, fine-tuning, annotating) is imported when a run asks for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from xdistil.tasks.description import DESCRIPTIONS, PLUGINS, TaskDescription, describe

if TYPE_CHECKING:
    from xdistil.tasks.base import Task

# the built-in tasks' modules, each holding one Task subclass named in the value
BUILTIN = {"classification": ("xdistil.tasks.classification", "Classification"), "tagging": ("xdistil.tasks.tagging", "Tagging")}
_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add a task (its description and its heavy part) under its name: a new task is a task module calling this."""
    DESCRIPTIONS[task.description.name] = task.description
    _TASKS[task.description.name] = task
    return task


def get_task(name: str) -> Task:
    """The task object for a config's `task`."""
    describe(name)  # an unknown name is one clear error
    if name not in _TASKS and name in BUILTIN:
        module, cls = BUILTIN[name]
        register_task(getattr(import_module(module), cls)())
    elif name not in _TASKS and name in PLUGINS:
        register_task(PLUGINS.pop(name))  # type: ignore[arg-type]
    return _TASKS[name]


__all__ = ["DESCRIPTIONS", "TaskDescription", "describe", "get_task", "register_task"]
