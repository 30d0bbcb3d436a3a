"""The executor's events: stages started and completed, rollback, cancel, approval and
skip (stream `deployment-<deployment_id>`; DESIGN §5).
"""

from __future__ import annotations

from datetime import datetime

from shared.events.base import Event
from shared.events.vocabulary import (
    StageStatus,
)


class DeploymentStarted(Event, tag="deployment_started", frozen=True):
    """The executor took the planned deployment up: PLANNED → RUNNING."""

    deployment_id: str
    application_id: str
    started_at: datetime
    timeout_s: float = 0.0  # the application's `spec.timeout` at the commit; 0: none
    executor: str = ""  # the replica that started it


class StageStarted(Event, tag="stage_started", frozen=True):
    """A stage began; `started_at` lets a WAIT resume with the time it has left."""

    deployment_id: str
    stage_id: str
    started_at: datetime
    name: str = ""


class StageCompleted(Event, tag="stage_completed", frozen=True):
    """A stage ended: SUCCESS | FAILURE | CANCELLED | SKIPPED | EXITED."""

    deployment_id: str
    stage_id: str
    status: StageStatus
    reason: str = ""
    completed_at: datetime | None = None


class DeploymentRollingBack(Event, tag="deployment_rolling_back", frozen=True):
    """The deployment failed or was cancelled with rollback: its rollback stages run now."""

    deployment_id: str
    application_id: str
    reason: str = ""


class DeploymentCancelRequested(Event, tag="deployment_cancel_requested", frozen=True):
    """Someone asked to cancel the deployment, rolling back or leaving things as they are."""

    deployment_id: str
    with_rollback: bool = True
    commander: str = ""


class StageApproved(Event, tag="stage_approved", frozen=True):
    """One approval of a WAIT_APPROVAL stage."""

    deployment_id: str
    stage_id: str
    approver: str


class StageSkipRequested(Event, tag="stage_skip_requested", frozen=True):
    """Someone asked to skip a stage (WAIT, WAIT_APPROVAL, ANALYSIS)."""

    deployment_id: str
    stage_id: str
    commander: str = ""
