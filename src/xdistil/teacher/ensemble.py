"""An ensemble of teachers: teacher.model plus the members of teacher.ensemble (other encoders, or the same one with
other seeds), each fine-tuned and cached as its own step in `teachers/member-N/`.

They label as one (`transfer.labelers.ensemble_labeler`): the transfer set holds the weighted mean of their
probabilities or logits, and teacher.model's representations (the student's dense layer has its width). The
evaluation gives each teacher's own test figures and the student's loyalty to each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
