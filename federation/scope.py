"""The scope bundle a grant carries: which resources, how many rows per query."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Resource = Literal["tasks", "notes", "credentials", "teams", "users"]
RESOURCES: tuple[str, ...] = ("tasks", "notes", "credentials", "teams", "users")


class Scope(BaseModel):
    """Validated scope; unknown keys and resources are rejected at ``grant create``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resources: list[Resource] = Field(min_length=1)
    excluded_resources: list[Resource] = Field(default_factory=list)
    max_rows_per_query: int = Field(ge=1, le=10000, strict=True)

    @model_validator(mode="after")
    def _no_overlap_or_duplicates(self) -> Scope:
        if len(set(self.resources)) != len(self.resources):
            raise ValueError("resources must not repeat")
        overlap = sorted(set(self.resources) & set(self.excluded_resources))
        if overlap:
            raise ValueError(f"excluded_resources overlaps resources: {', '.join(overlap)}")
        return self
