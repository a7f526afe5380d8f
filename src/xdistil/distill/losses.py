"""Distillation losses: small named objects with one contract, in a registry keyed by the name stages use.

Each loss is called as `loss(student_out, batch, mask=None)` where `student_out` has `.logits`
(N, C) or (N, T, C) and `.representation`, and `batch` holds the teacher's targets. `mask`
(N, T), when given, selects the real positions of token-level outputs, so padding and
ignored pieces never contribute. Each returns a scalar mean over the selected examples.

A loss is built by `build(context)` from the widths it connects and the distillation settings it
reads (`distill.soft_loss`, `distill.temperature`, ...). Adding a loss is one class with
`@register_loss("name")`; stage configs accept exactly the registered names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from xdistil.text import IGNORE


@dataclass(frozen=True)
class LossContext:
    """What a loss may be built from: the student's and teacher's representation widths and the
    run's distillation settings (a `DistillConfig`)."""

    student_dim: int
    teacher_dim: int
    settings: Any


class DistillLoss(nn.Module):
    """Base class of registered losses: `build` makes one from a context (default: no settings)."""

    @classmethod
    def build(cls, context: LossContext) -> DistillLoss:
        return cls()


LOSSES: dict[str, type[DistillLoss]] = {}


def register_loss(name: str) -> Callable[[type[DistillLoss]], type[DistillLoss]]:
    """Class decorator: make a loss available to stages as `losses: {name: weight}`."""

    def add(cls: type[DistillLoss]) -> type[DistillLoss]:
        LOSSES[name] = cls
        return cls

    return add


def build_loss(name: str, context: LossContext) -> DistillLoss:
    """The loss object for a stage's loss name."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    return LOSSES[name].build(context)


def _select(tensor: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Flatten to (examples, features), keeping only masked-in positions when a mask is given."""
    return tensor[mask] if mask is not None else tensor


@register_loss("hard")
class HardLoss(DistillLoss):
    """Cross-entropy against the teacher's argmax label (hard distillation).

    Inputs: student logits; batch["teacher_logits"]. The simple baseline of the paper that already
    matches the teacher given a large transfer set.
    """

    def forward(self, out, batch: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = _select(out.logits, mask)
        target = _select(batch["teacher_logits"], mask).argmax(dim=-1)
        return F.cross_entropy(logits.float(), target)


@register_loss("soft")
class SoftLoss(DistillLoss):
    """Match the teacher's logits: MSE on raw logits (the paper) or KL at a temperature (Hinton et al.).

    Inputs: student logits; batch["teacher_logits"]. KL is scaled by T^2 so its gradient size does
    not depend on the temperature.
    """

    def __init__(self, kind: str = "mse", temperature: float = 1.0):
        super().__init__()
        if kind not in ("mse", "kl"):
            raise ValueError(f"soft loss kind must be 'mse' or 'kl', got {kind!r}")
        self.kind = kind
        self.temperature = temperature

    @classmethod
    def build(cls, context: LossContext) -> SoftLoss:
        """Reads `distill.soft_loss` and `distill.temperature`."""
        return cls(context.settings.soft_loss, context.settings.temperature)

    def forward(self, out, batch: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        student = _select(out.logits, mask).float()
        teacher = _select(batch["teacher_logits"], mask).float()
        if self.kind == "mse":
            return F.mse_loss(student, teacher)
        t = self.temperature
        return F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True, reduction="batchmean") * t * t


@register_loss("representation")
class RepresentationLoss(DistillLoss):
    """Match a teacher layer with the student's dense layer: MSE or (1 - cosine similarity).

    Inputs: student representation; batch["teacher_repr"]. When widths differ, a learned linear
    projection maps the student's width to the teacher's; it trains with the stage and is not
    part of the exported student.
    """

    def __init__(self, student_dim: int, teacher_dim: int, kind: str = "mse"):
        super().__init__()
        if kind not in ("mse", "cosine"):
            raise ValueError(f"representation loss kind must be 'mse' or 'cosine', got {kind!r}")
        self.kind = kind
        self.projection: nn.Module = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)

    @classmethod
    def build(cls, context: LossContext) -> RepresentationLoss:
        """Reads `distill.representation_loss`; projects the student's width to the teacher's."""
        return cls(context.student_dim, context.teacher_dim, context.settings.representation_loss)

    def forward(self, out, batch: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        student = self.projection(_select(out.representation, mask).float())
        teacher = _select(batch["teacher_repr"], mask).float()
        if self.kind == "mse":
            return F.mse_loss(student, teacher)
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()


@register_loss("gold")
class GoldLoss(DistillLoss):
    """Cross-entropy against gold labels; batch["labels"] holds -100 where there is no gold label."""

    def forward(self, out, batch: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = _select(out.logits, mask).float()
        labels = _select(batch["labels"], mask)
        if not bool((labels != IGNORE).any()):
            return logits.sum() * 0.0  # a batch without gold labels contributes nothing (not NaN)
        return F.cross_entropy(logits, labels, ignore_index=IGNORE)
