"""The fine-tuned teacher in a run folder: a Hugging Face model folder plus a marker holding the
fingerprint of what made it and its training history, so a finished teacher is loaded, never retrained."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

import xdistil.distributed as distributed
from xdistil.config import TeacherConfig
from xdistil.loop import StageHistory
from xdistil.progress import log
from xdistil.atomic import atomic_write_json, staged_folder
from xdistil.teacher.heads import PooledHeadClassifier, load_teacher_model
from xdistil.teacher.models import load_classifier

MARKER = "xdistil_teacher.json"


@dataclass
class Teacher:
    """A teacher ready to annotate, with the fingerprint of its data and settings and how it trained."""

    model: torch.nn.Module
    fingerprint: str
    history: list[StageHistory] = field(default_factory=list)
    members: list = field(default_factory=list)  # an ensemble's further teachers (teacher.ensemble.Member); none for one teacher


def saved_fingerprint(folder: Path) -> str | None:
    """The fingerprint of the teacher saved in `folder`, or None when there is none."""
    marker = folder / MARKER
    return json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") if marker.is_file() else None


def load_teacher(folder: Path, fingerprint: str, auto_class, device: torch.device | str) -> Teacher | None:
    """The teacher saved in `folder` if it was made for `fingerprint`, else None."""
    marker = folder / MARKER
    if not marker.is_file():
        return None
    saved = json.loads(marker.read_text(encoding="utf-8"))
    if saved.get("fingerprint") != fingerprint:
        return None
    model = load_teacher_model(folder, auto_class).to(device).eval()
    return Teacher(model, fingerprint, [StageHistory.from_dict(h) for h in saved["history"]])


def save_teacher(folder: Path, teacher: Teacher, tokenizer) -> None:
    """Write model, tokenizer and marker to a staging folder, then move it into place."""
    with staged_folder(folder) as tmp:
        teacher.model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / MARKER, {"fingerprint": teacher.fingerprint, "history": [h.to_dict() for h in teacher.history]})


def load_or_finetune(
    folder: Path, fingerprint: str, config: TeacherConfig, label_names: list[str], auto_class, tokenizer,
    device: torch.device | str, finetune: Callable[[torch.nn.Module], list[StageHistory]], why: Callable[[], str] | None = None,
) -> Teacher:
    """The teacher saved in `folder` for `fingerprint`; else `config.model` with a head for our labels
    (`auto_class`), fine-tuned by `finetune(model)` (its stages' histories) unless `config.finetune` is off or the labels come from outside
    (`config.external`: the model is then only the reference encoder), then saved. A teacher saved for another
    fingerprint is redone, and the log says `why()`."""
    if why is not None and saved_fingerprint(folder) not in (None, fingerprint):
        log(f"teacher: redone ({why()})")
    done = load_teacher(folder, fingerprint, auto_class, device)
    if done is not None:
        log(f"teacher: loaded the fine-tuned teacher from {folder}")
        return done
    trains = config.finetune and not config.external
    model = load_classifier(config.model, label_names, not config.finetune and not config.external, auto_class)
    if trains and config.head_kind == "pooled":
        model = PooledHeadClassifier(model, config.head_pooling)
    model = model.to(device)
    history = finetune(model) if trains else []
    teacher = Teacher(model.eval(), fingerprint, history)
    if distributed.is_main():  # every process holds the same fine-tuned weights; one writes them
        save_teacher(folder, teacher, tokenizer)
    distributed.barrier()
    return teacher
