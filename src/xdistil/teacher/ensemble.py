"""An ensemble of teachers: teacher.model plus the members of teacher.ensemble (other encoders, or the same one with
other seeds), each fine-tuned and cached as its own step in `teachers/member-N/`.

They label as one (`transfer.labelers.EnsembleLabeler`): the transfer set holds the weighted mean of their
probabilities or logits, and teacher.model's representations (the student's dense layer has its width). The
evaluation gives each teacher's own test figures and the student's loyalty to each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from xdistil.config import RunConfig, TeacherConfig
from xdistil.teacher.store import Teacher


@dataclass
class Member:
    """One further teacher of an ensemble, fine-tuned: its model, the tokenizer it reads, seed, weight and folder."""

    teacher: Teacher
    tokenizer: Any
    model: str
    seed: int
    weight: float
    folder: Path


def member_settings(config: TeacherConfig, seed: int) -> list[tuple[TeacherConfig, int, float]]:
    """Each further member's teacher settings (teacher.model's, with its own model), seed and weight."""
    return [(config.model_copy(update={"model": m.model or config.model, "ensemble": []}), seed + i if m.seed is None else m.seed, m.weight)
            for i, m in enumerate(config.ensemble, 1)]


def finetune_members(config: RunConfig, folder_of: Callable[[int], Path],
                     finetune_one: Callable[[TeacherConfig, Any, int, Path], Teacher]) -> list[Member]:
    """Every further member, fine-tuned by `finetune_one(settings, tokenizer, seed, folder)` (or loaded when done)."""
    from accelerate.utils import set_seed

    from xdistil.teacher.models import load_tokenizer

    members = []
    for index, (settings, seed, weight) in enumerate(member_settings(config.teacher, config.seed), 1):
        tokenizer = load_tokenizer(settings.model)
        set_seed(seed)  # its new head and its batch order
        members.append(Member(finetune_one(settings, tokenizer, seed, folder_of(index)), tokenizer, settings.model, seed, weight,
                              folder_of(index)))
    return members


def ensemble_labeler(first, teacher: Teacher, task, label_names: Sequence[str], precision: str, pooling: str, combine: str):
    """The ensemble's labeler: `first` (teacher.model's labeler, whose token ids and representations the cache keeps) and a
    labeler per member, each reading the texts with its own tokenizer, at its own middle layer."""
    from xdistil.teacher.inference import resolve_layer
    from xdistil.teacher.models import resolve_pooling
    from xdistil.transfer.labelers import EnsembleLabeler, TeacherLabeler

    members = [first]
    for member in teacher.members:
        labeler = TeacherLabeler.of(member.teacher, member.tokenizer, task, label_names, precision, member.folder)
        own = {"layer": resolve_layer(member.teacher.model, None), "pooling": resolve_pooling(member.model, pooling)}
        members.append(replace(labeler, own_spec=own))
    return EnsembleLabeler(members, combine, [1.0] + [m.weight for m in teacher.members], representation_from_first=True)


def member_figures(config: RunConfig, teacher: Teacher, tokenizer, task, label_names: list[str], split, spec) -> list[tuple[dict, np.ndarray]]:
    """(who, test logits) of every teacher of an ensemble, teacher.model first: each labels the test split alone."""
    from xdistil.teacher.inference import resolve_layer
    from xdistil.teacher.models import resolve_pooling
    from xdistil.transfer.labelers import TeacherLabeler

    who = [(teacher, tokenizer, config.teacher.model, config.seed, 1.0, None)]
    who += [(m.teacher, m.tokenizer, m.model, m.seed, m.weight, m.folder) for m in teacher.members]
    out = []
    for model, reads, name, seed, weight, folder in who:
        labeler = TeacherLabeler.of(model, reads, task, label_names, spec.precision, folder or Path())
        own = replace(spec, layer=resolve_layer(model.model, None), pooling=resolve_pooling(name, config.teacher.pooling))
        tensors, _ = labeler.label(list(split.texts), own, lambda n: None)
        out.append(({"model": name, "seed": seed, "weight": weight}, tensors["logits"].numpy()))
    return out
