"""Distillation losses: small named objects with one contract, in a registry keyed by the name stages use.

Each loss is called as `loss(student_out, batch, mask=None)` where `student_out` has `.logits`
(N, C) or (N, T, C) and `.representation`, and `batch` holds the teacher's targets. `mask`
(N, T), when given, selects the real positions of token-level outputs, so padding and
ignored pieces never contribute. Each returns a scalar mean over the selected examples.

A loss is built by `build(context)` from the widths it connects and its own settings (`context.own`):
each loss declares them in a small settings class (`settings_class`, a `LossSettings` with the stage's
`weight` and the loss's keys, e.g. `kind` and `temperature` for `soft`), which validates a stage's
`losses: {soft: {weight: 1, kind: kl, temperature: 2}}`; a bare number is the weight with default settings.
Adding a loss is one class with `@register_loss("name")`; stage configs accept exactly the registered names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from xdistil.distill.relations import Capture, encoder_layers, relation_divergence
from xdistil.errors import XDistilError
from xdistil.student.inputs import length_mask
from xdistil.teacher.inference import pool
from xdistil.text import IGNORE


class LossSettings(BaseModel):
    """One loss's settings in a stage: its weight in the stage's sum, and (in a subclass) the loss's own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    weight: float = Field(1.0, ge=0, description="the loss's weight in the stage's sum")

    def own(self) -> dict:
        """The loss's own settings, without the weight (they must agree in every stage that uses the loss)."""
        return self.model_dump(mode="json", exclude={"weight"})

    def check_teacher(self, hidden_layers: int) -> None:
        """Refuse (ValueError) a setting that names a layer the teacher does not have; checked before a run starts."""


@dataclass(frozen=True)
class LossContext:
    """What a loss may be built from: the student's and teacher's representation widths, the run's
    distillation settings (a `DistillConfig`), where known the layer counts of both encoders (a student's
    representation then has its encoder's width), and the loss's own settings (`own`)."""

    student_dim: int
    teacher_dim: int
    settings: Any
    student_layers: int | None = None
    teacher_layers: int | None = None
    student: nn.Module | None = None  # the models themselves, for losses that hook into their layers
    teacher: nn.Module | None = None
    own: LossSettings | None = None  # set by build_loss: the loss's settings_class, from the stage's config


class DistillLoss(nn.Module):
    """Base class of registered losses: `build` makes one from a context (default: no settings).

    `needs_teacher`: the loss reads the teacher's hidden states, computed online on each batch
    (`batch["teacher_hidden_states"]`, `batch["teacher_attention_mask"]`) rather than cached.
    `reads`: the cached targets it needs from the labeler (`logits`, `repr`): a labeler that lacks one is refused.
    """

    needs_teacher: ClassVar[bool] = False
    reads: ClassVar[frozenset[str]] = frozenset()
    settings_class: ClassVar[type[LossSettings]] = LossSettings

    @classmethod
    def build(cls, context: LossContext) -> DistillLoss:
        return cls()

    def release(self) -> None:
        """Undo anything the loss attached to the models (e.g. forward hooks) once its stages are done."""


LOSSES: dict[str, type[DistillLoss]] = {}


def register_loss(name: str) -> Callable[[type[DistillLoss]], type[DistillLoss]]:
    """Class decorator: make a loss available to stages as `losses: {name: weight}`."""

    def add(cls: type[DistillLoss]) -> type[DistillLoss]:
        LOSSES[name] = cls
        return cls

    return add


def needs_teacher(losses: list[str] | set[str]) -> bool:
    """Whether any of these losses reads the teacher's states on each batch."""
    return any(LOSSES[name].needs_teacher for name in losses)


def missing_targets(loss: str, provides: frozenset[str]) -> str | None:
    """What loss `loss` needs that a labeler giving `provides` (and no teacher model in the process) lacks, in words; None if nothing."""
    cls = LOSSES[loss]
    if cls.needs_teacher:
        return "the teacher model's hidden states on each batch"
    lacking = sorted(cls.reads - provides)
    return " and ".join({"logits": "the teacher's logits", "repr": "the teacher's representations"}.get(t, t) for t in lacking) or None


def loss_settings(name: str, value: Any) -> LossSettings:
    """A stage's entry for loss `name` (a weight, a mapping of its settings, or settings) as its settings object."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    cls = LOSSES[name].settings_class
    if isinstance(value, cls):
        return value
    if isinstance(value, LossSettings):
        value = value.model_dump()
    return cls.model_validate({"weight": value} if isinstance(value, (int, float)) and not isinstance(value, bool) else value)


def build_loss(name: str, context: LossContext, settings: Any = None) -> DistillLoss:
    """The loss object for a stage's loss name, with its settings (default: the loss's defaults)."""
    own = loss_settings(name, 1.0 if settings is None else settings)
    return LOSSES[name].build(replace(context, own=own))


# today's spelling of loss settings in the `distill` section: key -> (loss, its settings key); still read
LEGACY_KEYS = {
    "soft_loss": ("soft", "kind"), "temperature": ("soft", "temperature"), "representation_loss": ("representation", "kind"),
    "layer_map": ("layers", "layer_map"), "attention_layers": ("attention", "layers"), "relation_heads": ("attention", "relation_heads"),
}


def _select(tensor: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Flatten to (examples, features), keeping only masked-in positions when a mask is given."""
    return tensor[mask] if mask is not None else tensor


@register_loss("hard")
class HardLoss(DistillLoss):
    """Cross-entropy against the teacher's argmax label (hard distillation).

    Inputs: student logits; batch["teacher_logits"]. The simple baseline of the paper that already
    matches the teacher given a large transfer set.
    """

    reads = frozenset({"logits"})

    def forward(self, out, batch: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = _select(out.logits, mask)
        target = _select(batch["teacher_logits"], mask).argmax(dim=-1)
        return F.cross_entropy(logits.float(), target)


class SoftSettings(LossSettings):
    kind: Literal["mse", "kl"] = Field("mse", description="mse on raw logits (the paper) or kl at the temperature")
    temperature: float = Field(1.0, gt=0, description="kl: the softmax temperature of both sides")


@register_loss("soft")
class SoftLoss(DistillLoss):
    """Match the teacher's logits: MSE on raw logits (the paper) or KL at a temperature (Hinton et al.).

    Inputs: student logits; batch["teacher_logits"]. KL is scaled by T^2 so its gradient size does
    not depend on the temperature.
    """

    settings_class = SoftSettings
    reads = frozenset({"logits"})

    def __init__(self, kind: str = "mse", temperature: float = 1.0):
        super().__init__()
        if kind not in ("mse", "kl"):
            raise ValueError(f"soft loss kind must be 'mse' or 'kl', got {kind!r}")
        self.kind = kind
        self.temperature = temperature

    @classmethod
    def build(cls, context: LossContext) -> SoftLoss:
        """Reads its `kind` and `temperature`."""
        return cls(context.own.kind, context.own.temperature)

    def forward(self, out, batch: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        student = _select(out.logits, mask).float()
        teacher = _select(batch["teacher_logits"], mask).float()
        if self.kind == "mse":
            return F.mse_loss(student, teacher)
        t = self.temperature
        return F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True, reduction="batchmean") * t * t


class RepresentationSettings(LossSettings):
    kind: Literal["mse", "cosine"] = Field("mse", description="mse, or 1 - cosine similarity")


@register_loss("representation")
class RepresentationLoss(DistillLoss):
    """Match a teacher layer with the student's dense layer: MSE or (1 - cosine similarity).

    Inputs: student representation; batch["teacher_representation"]. When widths differ, a learned linear
    projection maps the student's width to the teacher's; it trains with the stage and is not
    part of the exported student.
    """

    settings_class = RepresentationSettings
    reads = frozenset({"repr"})

    def __init__(self, student_dim: int, teacher_dim: int, kind: str = "mse"):
        super().__init__()
        if kind not in ("mse", "cosine"):
            raise ValueError(f"representation loss kind must be 'mse' or 'cosine', got {kind!r}")
        self.kind = kind
        self.projection: nn.Module = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)

    @classmethod
    def build(cls, context: LossContext) -> RepresentationLoss:
        """Reads its `kind`; projects the student's width to the teacher's."""
        return cls(context.student_dim, context.teacher_dim, context.own.kind)

    def forward(self, out, batch: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        student = self.projection(_select(out.representation, mask).float())
        teacher = _select(batch["teacher_representation"], mask).float()
        if self.kind == "mse":
            return F.mse_loss(student, teacher)
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()


def uniform_layer_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    """Each student layer to the teacher layer at the same relative depth (hidden-state indices, 0 = embeddings)."""
    return {i: round(i * teacher_layers / student_layers) for i in range(1, student_layers + 1)}


class LayersSettings(LossSettings):
    layer_map: dict[int, int] = Field(
        default_factory=dict, description="student hidden-state index -> teacher's (0 = embeddings); empty: same relative depth"
    )

    def check_teacher(self, hidden_layers: int) -> None:
        for student_index, teacher_index in self.layer_map.items():
            if not 0 <= teacher_index <= hidden_layers:
                raise ValueError(f"the layers loss's layer_map: {student_index} -> {teacher_index}: the teacher's hidden states are 0-{hidden_layers}")


@register_loss("layers")
class LayerMatchLoss(DistillLoss):
    """Intermediate-layer matching: MSE between student layer i and teacher layer j for each pair of
    its `layer_map` (hidden-state indices, 0 = embeddings; empty: every student layer to the
    teacher layer at the same relative depth), each side mean-pooled over its own real tokens, so the
    two may use different tokenizers; a learned projection per pair when widths differ (not exported).

    Inputs: student_out.hidden_states and batch["lengths"]; batch["teacher_hidden_states"] and
    batch["teacher_attention_mask"], from the teacher run on each batch (the targets are not cached:
    one vector per layer and text would be, 92 MB per 10k texts for six layers in fp16, cheaper than the
    online teacher from a stage's second epoch on, but a layers + attention stage did not beat soft logits
    alone on the classification benchmark's dev split).
    Per text only (classification).
    """

    needs_teacher = True
    settings_class = LayersSettings

    def __init__(self, layer_map: dict[int, int], student_dim: int, teacher_dim: int):
        super().__init__()
        self.layer_map = {int(k): int(v) for k, v in layer_map.items()}
        self.projections = nn.ModuleDict(
            {str(i): nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim) for i in self.layer_map}
        )

    @classmethod
    def build(cls, context: LossContext) -> LayerMatchLoss:
        """Reads its `layer_map`; needs the student's hidden states (a transformer student)."""
        if context.student_layers is None or context.teacher_layers is None:
            raise XDistilError("the 'layers' loss needs a student and a teacher with hidden layers (student.arch: transformer)")
        layer_map = context.own.layer_map or uniform_layer_map(context.student_layers, context.teacher_layers)
        for i, j in layer_map.items():
            if not (0 <= int(i) <= context.student_layers and 0 <= int(j) <= context.teacher_layers):
                raise XDistilError(
                    f"the layers loss's layer_map: {i} -> {j} is out of range (student layers 0-{context.student_layers}, "
                    f"teacher layers 0-{context.teacher_layers})"
                )
        return cls(layer_map, context.student_dim, context.teacher_dim)

    def forward(self, out, batch: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        lengths = batch["lengths"].to(out.hidden_states[0].device)
        student_mask = length_mask(lengths, out.hidden_states[0].size(1))
        total = out.hidden_states[0].new_zeros(())
        for i, j in self.layer_map.items():
            student = self.projections[str(i)](pool(out.hidden_states[i].float(), student_mask, "mean"))
            teacher = pool(batch["teacher_hidden_states"][j].float(), batch["teacher_attention_mask"], "mean")
            total = total + F.mse_loss(student, teacher)
        return total / len(self.layer_map)


class AttentionSettings(LossSettings):
    layers: tuple[int, int] | None = Field(None, description="[student layer, teacher layer], 0-based; default the last layer of each")
    relation_heads: int = Field(12, ge=1, description="relation heads the layers' widths are split into")

    def check_teacher(self, hidden_layers: int) -> None:
        if self.layers is not None and not 0 <= self.layers[1] < hidden_layers:
            raise ValueError(f"the attention loss's layers: teacher layer {self.layers[1]} does not exist (0-{hidden_layers - 1})")


@register_loss("attention")
class AttentionRelationLoss(DistillLoss):
    """MiniLM-v2 style self-attention relation matching between one student layer and one teacher layer
    (its `layers`: [student layer, teacher layer], 0-based; default the last of each): for
    queries, keys and values, KL(teacher || student) between their position-to-position relations in
    `relation_heads` relation heads, so head counts and widths may differ.

    Inputs: the query/key/value outputs of both layers, captured by forward hooks during the student's
    forward and the teacher's (run on each batch); batch["lengths"]. Relations compare positions, so
    both must read their tokens at the same positions: the teacher's own tokenizer (`encoder: teacher`) or
    one that segments alike (MiniLM's and MPNet's uncased word pieces did, on every benchmark text). Not
    cached: a cache would hold every token's query, key and value vectors (1.27 GB per 10k texts of ~28
    pieces, one 768-wide layer, fp16).
    """

    needs_teacher = True
    settings_class = AttentionSettings

    def __init__(self, student_layer: nn.Module, teacher_layer: nn.Module, heads: int):
        super().__init__()
        self.heads = heads
        self.captures = (Capture(student_layer), Capture(teacher_layer))  # plain objects: the layers stay the models' own

    @classmethod
    def build(cls, context: LossContext) -> AttentionRelationLoss:
        """Reads its `layers` and `relation_heads`."""
        if context.student is None or context.teacher is None or context.student_layers is None:
            raise XDistilError("the 'attention' loss needs a transformer student (student.arch: transformer) and its teacher")
        student_layers, teacher_layers = encoder_layers(context.student), encoder_layers(context.teacher)
        i, j = context.own.layers or (len(student_layers) - 1, len(teacher_layers) - 1)
        if not (0 <= i < len(student_layers) and 0 <= j < len(teacher_layers)):
            raise XDistilError(
                f"the attention loss's layers: [{i}, {j}] is out of range (student layers 0-{len(student_layers) - 1}, "
                f"teacher layers 0-{len(teacher_layers) - 1})"
            )
        return cls(student_layers[i], teacher_layers[j], context.own.relation_heads)

    def release(self) -> None:
        for capture in self.captures:
            capture.remove()

    def forward(self, out, batch: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        student, teacher = (capture.outputs for capture in self.captures)
        if student[0].shape[:2] != teacher[0].shape[:2]:
            raise XDistilError(
                "the 'attention' loss compares token positions: the student must read the teacher's tokens "
                f"(got {student[0].shape[1]} student and {teacher[0].shape[1]} teacher positions); use a student that "
                "shares the teacher's tokenizer"
            )
        lengths = batch["lengths"].to(student[0].device)
        real = length_mask(lengths, student[0].size(1))
        return sum(relation_divergence(s, t, self.heads, real) for s, t in zip(student, teacher)) / 3


@register_loss("gold")
class GoldLoss(DistillLoss):
    """Cross-entropy against gold labels; batch["labels"] holds -100 where there is no gold label."""

    def forward(self, out, batch: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = _select(out.logits, mask).float()
        labels = _select(batch["labels"], mask)
        if not bool((labels != IGNORE).any()):
            return logits.sum() * 0.0  # a batch without gold labels contributes nothing (not NaN)
        return F.cross_entropy(logits, labels, ignore_index=IGNORE)
