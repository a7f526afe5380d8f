"""What every student family's config section holds: its `arch`, the vocabulary cut-off, and the layer groups it offers.

Plain pydantic with no torch import, so a config can be read and checked before any model exists.
A family subclasses `StudentSettings` with its own sizes and registers it with its model class.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class StudentSettings(BaseModel):
    """The `student` section of a run config; `arch` picks the family."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    arch: str
    min_count: int = Field(1, ge=1, description="word pieces seen fewer times map to [UNK]")
    texts_only: ClassVar[bool] = False  # the family classifies whole texts and cannot tag words

    def layer_groups(self) -> tuple[str, ...]:
        """Names of the student's parameter groups, top first (the order of gradual unfreezing)."""
        raise NotImplementedError

    @classmethod
    def distill_defaults(cls) -> dict:
        """`distill` settings this family trains with when a config leaves them out (e.g. its schedule
        and learning rate); empty: the general defaults."""
        return {}


class TableSettings(StudentSettings):
    """A family whose first layer is its own word-piece table over the pruned vocabulary, started from the teacher's
    (`student/base.py: initial_table`)."""

    emb_dim: int = Field(128, ge=2)
    embedding_init: Literal["teacher_pca", "teacher_output", "base_output", "random"] = Field(
        "teacher_pca", description="first embedding table: PCA of the teacher's input table (teacher_pca), of each piece's output "
        "vector from the fine-tuned teacher (teacher_output) or from the encoder before fine-tuning (base_output), or random"
    )
    embedding_sif: float | None = Field(
        None, gt=0, lt=1, description="scale each row by a / (a + frequency of the piece in the transfer set) (SIF weighting); none: off"
    )
