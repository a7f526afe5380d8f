"""What every student family's config section holds: its `arch`, the vocabulary cut-off, and the layer groups it offers.

Plain pydantic with no torch import, so a config can be read and checked before any model exists.
A family subclasses `StudentSettings` with its own sizes and registers it with its model class.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StudentSettings(BaseModel):
    """The `student` section of a run config; `arch` picks the family."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    arch: str
    min_count: int = Field(1, ge=1, description="word pieces seen fewer times map to [UNK]")

    def layer_groups(self) -> tuple[str, ...]:
        """Names of the student's parameter groups, top first (the order of gradual unfreezing)."""
        raise NotImplementedError

    @classmethod
    def distill_defaults(cls) -> dict:
        """`distill` settings this family trains with when a config leaves them out (e.g. its schedule
        and learning rate); empty: the general defaults."""
        return {}
