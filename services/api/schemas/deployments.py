"""Deployments: summaries and lists, commands (cancel, approve, skip) and their answer,
log lines, and the queries of the deployment routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.api.schemas.fields import (
    NextCursor,
    Position,
    Text,
)
from services.api.schemas.parameters import (
    DEPLOYMENTS_PAGE,
)
from shared.analysis.judges import JUDGE_NAMES
from shared.events.vocabulary import DeploymentStatus


class DeploymentSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment as listings show it (without its stages)."""

    deployment_id: str
    application_id: str
    application_name: str = ""
    """Its name, also once deleted (then `application_deleted`); "" if never registered."""
    application_deleted: bool = False
    status: str
    trigger: str
    commit_hash: str
    commit_message: str
    commander: str
    strategy: str
    summary: str
    reason: str
    deployed_version: str = ""
    """The version its plan deploys (its workloads' image tags, PipeCD's `determineVersion`);
    "" until planned. At most 200 characters here (`GET /deployments/{id}` has it whole)."""
    queued_behind: str | None = None
    """While PENDING: the deployment of the same application it waits for."""
    triggered_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    position: Position


class DeploymentList(msgspec.Struct, frozen=True, kw_only=True):
    """One page of deployments, newest first."""

    items: list[DeploymentSummary]
    next_cursor: NextCursor = None


class CancelDeploymentRequest(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Cancel a running deployment; with `rollback` (the default) the executor rolls back first."""

    rollback: bool = True


class CommandAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """A request the executor acts on was recorded (or had been already: `appended` false)."""

    deployment_id: str
    command: Literal["cancel", "approve", "skip"]
    stage_id: str | None = None
    appended: bool
    position: Position


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line a stage wrote (`stage_logs`)."""

    id: int
    deployment_id: str
    stage_id: str
    severity: str
    message: str
    recorded_at: datetime


class LogList(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /deployments/{id}/logs`: stage log lines in order."""

    items: list[LogLine]


class ListDeploymentsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The filters of `GET /deployments`."""

    application: Annotated[
        Text | None, Meta(description="Only this application's (id or name).")
    ] = None
    status: Annotated[
        tuple[DeploymentStatus, ...],
        Meta(description="Only these statuses (repeat, or comma-separate)."),
    ] = ()
    limit: Annotated[int, Meta(ge=1, le=DEPLOYMENTS_PAGE.maximum, description="Page size.")] = (
        DEPLOYMENTS_PAGE.default
    )
    cursor: Annotated[
        Annotated[str, Meta(pattern="^[0-9]{1,18}$")] | None,
        Meta(description="`next_cursor` of the previous page."),
    ] = None


class DeploymentLogsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of `GET /deployments/{id}/logs`."""

    stage_id: Annotated[
        Text | None,
        Meta(description="Only this stage's lines: its id, or its name if no other stage has it."),
    ] = None
    follow: Annotated[
        bool, Meta(description="Stream as server-sent events until the deployment completes.")
    ] = False


JudgeName = Literal[JUDGE_NAMES]  # type: ignore[valid-type]


class RejudgeQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of `GET /deployments/{id}/rejudge`."""

    judge: Annotated[
        JudgeName | None,
        Meta(description="Judge comparisons with this judge (default: the one each analysis ran)."),
    ] = None
