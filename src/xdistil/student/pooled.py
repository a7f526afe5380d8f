"""The pooled student: embedding -> dropout -> mean and max over the text's pieces -> dense (teacher width) -> output.

No recurrence and no attention: a text costs a table lookup and two small matrix products, the speed of a
static-embedding classifier (model2vec) but with the teacher's transfer set to learn from. It classifies whole
texts only (a word's vector would not see its neighbours). Its table starts like the BiLSTM's: the teacher's
input table or each piece's output vector, PCA-reduced, optionally SIF-weighted (`embedding_init`, `embedding_sif`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from xdistil.student.base import StudentContext, StudentOutput, TableStudent
from xdistil.student.inputs import length_mask
from xdistil.student.registry import register
from xdistil.student.settings import TableSettings

GROUPS = ("output", "dense", "embedding")
POOLINGS = ("mean", "max", "mean_max")


class PooledSettings(TableSettings):
    """The pooled student's sizes and pooling; dense_dim defaults to the teacher's width."""

    arch: Literal["pooled"] = "pooled"
    texts_only: ClassVar[bool] = True
    pooling: Literal["mean", "max", "mean_max"] = Field("mean_max", description="over the text's pieces: their mean, their "
                                                        "maximum per column, or both side by side")
    dropout: float = Field(0.1, ge=0, lt=1)
    dense_dim: int | None = None

    def layer_groups(self) -> tuple[str, ...]:
        return GROUPS


@dataclass
class PooledConfig:
    """Every size of the student, saved with its weights."""

    vocab_size: int
    num_labels: int
    emb_dim: int = 128
    pooling: str = "mean_max"
    dropout: float = 0.1
    dense_dim: int = 768
    pad_id: int = 0


@register
class PooledStudent(TableStudent):
    """Text classifier over pooled word-piece vectors, its dense layer the teacher's width (so it can mimic a teacher layer)."""

    arch = "pooled"
    settings_class = PooledSettings
    config_class = PooledConfig

    def __init__(self, config: PooledConfig):
        super().__init__()
        if config.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {config.pooling!r}; expected one of {', '.join(POOLINGS)}")
        self.sizes = config
        self.embedding = nn.Embedding(config.vocab_size, config.emb_dim, padding_idx=config.pad_id)
        self.dropout = nn.Dropout(config.dropout)
        pooled_width = config.emb_dim * (2 if config.pooling == "mean_max" else 1)
        self.dense = nn.Linear(pooled_width, config.dense_dim)
        self.output = nn.Linear(config.dense_dim, config.num_labels)

    @classmethod
    def build(cls, settings: PooledSettings, context: StudentContext) -> PooledStudent:
        if context.per_word:  # the config check refuses it first; this guards a direct build
            raise ValueError("the pooled student classifies whole texts; a per-word task needs bilstm or transformer")
        model = cls(PooledConfig(
            vocab_size=len(context.vocab), num_labels=context.num_labels, emb_dim=settings.emb_dim, pooling=settings.pooling,
            dropout=settings.dropout, dense_dim=settings.dense_dim or context.teacher.config.hidden_size, pad_id=context.vocab.pad_id,
        ))
        return model.start_table(settings, context)

    @property
    def per_word(self) -> bool:
        return False

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        modules = {"output": self.output, "dense": self.dense, "embedding": self.embedding}
        return {name: list(modules[name].parameters()) for name in GROUPS}

    def forward(self, batch: dict[str, torch.Tensor]) -> StudentOutput:
        """Padding never reaches the pool: the mean divides by each text's own length, the max skips padded positions."""
        input_ids, lengths = batch["input_ids"], batch["lengths"]
        embedded = self.dropout(self.embedding(input_ids))
        real = length_mask(lengths.to(input_ids.device), input_ids.size(1))[:, :, None]
        parts = []
        if self.sizes.pooling in ("mean", "mean_max"):
            total = embedded.masked_fill(~real, 0.0).sum(dim=1)
            parts.append(total / lengths.to(total.device, total.dtype).clamp(min=1)[:, None])
        if self.sizes.pooling in ("max", "mean_max"):
            parts.append(embedded.masked_fill(~real, float("-inf")).max(dim=1).values)
        pooled = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        representation = self.dense(self.dropout(pooled))
        logits = self.output(self.dropout(nn.functional.gelu(representation)))
        return StudentOutput(logits, representation)
