"""Student families by `student.arch`. A family is one module that defines a `Student` subclass
with its settings class and registers it here; the built-in families are imported below."""

from __future__ import annotations

import importlib

from xdistil.student.base import Student

BUILTIN_MODULES = ("xdistil.student.bilstm", "xdistil.student.pooled", "xdistil.student.transformer")
DEFAULT_ARCH = "bilstm"

_FAMILIES: dict[str, type[Student]] = {}


def register(cls: type[Student]) -> type[Student]:
    """Class decorator: make a student family available as `student.arch: <cls.arch>`."""
    _FAMILIES[cls.arch] = cls
    return cls


def families() -> dict[str, type[Student]]:
    """Every registered family by arch (the built-in ones are loaded on first use)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return dict(_FAMILIES)


def family(arch: str) -> type[Student]:
    """The family registered as `arch`; an unknown name is a ValueError listing the known ones."""
    known = families()
    if arch not in known:
        raise ValueError(f"unknown student arch {arch!r}; expected one of {', '.join(sorted(known))}")
    return known[arch]
