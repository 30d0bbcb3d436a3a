"""Plan preview: what a branch would deploy, asked before it is merged."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

# Branch names as git allows them, minus what could read as an option or a range.
BranchName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$")]


class PlanPreviewRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Preview a branch (or commit) of a control-config repository against its base branch."""

    repository_id: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    base_branch: Annotated[
        BranchName | None, Meta(description="Default: the branch the control config watches.")
    ] = None
    head_branch: BranchName | None = None
    head_commit: Annotated[str, Meta(pattern=r"^[0-9a-f]{7,40}$")] | None = None


class PlanPreviewResult(msgspec.Struct, frozen=True, kw_only=True):
    """Per affected application: the strategy, summary, stages and diff (or why it failed)."""

    base: dict[str, Any]
    head: dict[str, Any]
    results: list[dict[str, Any]]
    failures: list[dict[str, Any]]
