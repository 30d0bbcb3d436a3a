"""Which Slipway event is which PipeCD notification type, and each type's group.

PipeCD's `NotificationEventType` (pkg/model/notificationevent.proto) is kept
name for name, without its `EVENT_` prefix, because that is how routes spell
them (`events: [DEPLOYMENT_FAILED]`). PipeCD defines `DEPLOYMENT_ROLLING_BACK`,
`APPLICATION_SYNCED` and `APPLICATION_OUT_OF_SYNC` but its piped never sends
them; Slipway has events for all three, so it does; likewise `DEPLOYMENT_STARTED`
and the `STAGE_*` types (PipeCD's newer ones) come from the executor's events.
`APPLICATION_HEALTHY` comes from the drift service's health check (PipeCD
defines it, its piped never sends it). Slipway has no piped agent: the two
`PIPED_*` types are each service process starting and stopping
(`ServiceStarted`, `ServiceStopped`, recorded by the runtime).
"""

from __future__ import annotations

import enum
from typing import Final

from shared.config.application import NOTIFICATION_EVENTS
from shared.config.control import NOTIFICATION_GROUPS
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationHealthChanged,
    ApplicationSyncStateChanged,
    ChainCompleted,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentRollingBack,
    DeploymentStarted,
    DeploymentTriggered,
    ServiceStarted,
    ServiceStopped,
    StageApproved,
    StageCompleted,
    StageStarted,
)

__all__ = [
    "GROUP_OF",
    "SOURCES",
    "NotificationGroup",
    "NotificationType",
    "notification_type_of",
    "notification_types_of",
]


class NotificationType(enum.StrEnum):
    """PipeCD's notification event types, spelled as routes spell them."""

    DEPLOYMENT_TRIGGERED = "DEPLOYMENT_TRIGGERED"
    DEPLOYMENT_PLANNED = "DEPLOYMENT_PLANNED"
    DEPLOYMENT_APPROVED = "DEPLOYMENT_APPROVED"
    DEPLOYMENT_ROLLING_BACK = "DEPLOYMENT_ROLLING_BACK"
    DEPLOYMENT_SUCCEEDED = "DEPLOYMENT_SUCCEEDED"
    DEPLOYMENT_FAILED = "DEPLOYMENT_FAILED"
    DEPLOYMENT_CANCELLED = "DEPLOYMENT_CANCELLED"
    DEPLOYMENT_WAIT_APPROVAL = "DEPLOYMENT_WAIT_APPROVAL"
    DEPLOYMENT_TRIGGER_FAILED = "DEPLOYMENT_TRIGGER_FAILED"
    DEPLOYMENT_STARTED = "DEPLOYMENT_STARTED"
    DEPLOYMENT_CHAIN_SUCCEEDED = "DEPLOYMENT_CHAIN_SUCCEEDED"
    DEPLOYMENT_CHAIN_FAILED = "DEPLOYMENT_CHAIN_FAILED"
    DEPLOYMENT_CHAIN_CANCELLED = "DEPLOYMENT_CHAIN_CANCELLED"
    APPLICATION_SYNCED = "APPLICATION_SYNCED"
    APPLICATION_OUT_OF_SYNC = "APPLICATION_OUT_OF_SYNC"
    APPLICATION_HEALTHY = "APPLICATION_HEALTHY"
    PIPED_STARTED = "PIPED_STARTED"
    PIPED_STOPPED = "PIPED_STOPPED"
    STAGE_STARTED = "STAGE_STARTED"
    STAGE_SKIPPED = "STAGE_SKIPPED"
    STAGE_SUCCEEDED = "STAGE_SUCCEEDED"
    STAGE_FAILED = "STAGE_FAILED"
    STAGE_CANCELLED = "STAGE_CANCELLED"


class NotificationGroup(enum.StrEnum):
    """PipeCD's `NotificationEventGroup` (without `EVENT_NONE`, which nothing belongs to)."""

    DEPLOYMENT = "DEPLOYMENT"
    APPLICATION_SYNC = "APPLICATION_SYNC"
    APPLICATION_HEALTH = "APPLICATION_HEALTH"
    PIPED = "PIPED"
    STAGE = "STAGE"


_T = NotificationType
_G = NotificationGroup

# PipeCD groups by the enum's number range (0-99 deployment, 100s sync, 200s health, 300s piped,
# 400s stage).
GROUP_OF: Final[dict[NotificationType, NotificationGroup]] = {
    **{t: _G.DEPLOYMENT for t in _T if t.name.startswith("DEPLOYMENT_")},
    _T.APPLICATION_SYNCED: _G.APPLICATION_SYNC,
    _T.APPLICATION_OUT_OF_SYNC: _G.APPLICATION_SYNC,
    _T.APPLICATION_HEALTHY: _G.APPLICATION_HEALTH,
    _T.PIPED_STARTED: _G.PIPED,
    _T.PIPED_STOPPED: _G.PIPED,
    **{t: _G.STAGE for t in _T if t.name.startswith("STAGE_")},
}

SOURCES: Final[dict[NotificationType, str]] = {
    _T.DEPLOYMENT_TRIGGERED: "DeploymentTriggered",
    _T.DEPLOYMENT_PLANNED: "DeploymentPlanned",
    _T.DEPLOYMENT_APPROVED: "StageApproved (each approval of a WAIT_APPROVAL stage)",
    _T.DEPLOYMENT_ROLLING_BACK: "DeploymentRollingBack",
    _T.DEPLOYMENT_SUCCEEDED: "DeploymentCompleted with status SUCCESS",
    _T.DEPLOYMENT_FAILED: "DeploymentCompleted with status FAILURE, and DeploymentPlanFailed",
    _T.DEPLOYMENT_CANCELLED: "DeploymentCompleted with status CANCELLED",
    _T.DEPLOYMENT_WAIT_APPROVAL: "StageStarted of a WAIT_APPROVAL stage",
    _T.DEPLOYMENT_TRIGGER_FAILED: "DeploymentPlanFailed (the commit's config could not be planned)",
    _T.DEPLOYMENT_CHAIN_SUCCEEDED: "ChainCompleted with status SUCCESS (Slipway's own type)",
    _T.DEPLOYMENT_CHAIN_FAILED: "ChainCompleted with status FAILURE (Slipway's own type)",
    _T.DEPLOYMENT_CHAIN_CANCELLED: "ChainCompleted with status CANCELLED (Slipway's own type)",
    _T.DEPLOYMENT_STARTED: "DeploymentStarted (the executor took the planned deployment up)",
    _T.APPLICATION_SYNCED: "ApplicationSyncStateChanged to SYNCED (drift detection)",
    _T.APPLICATION_OUT_OF_SYNC: "ApplicationSyncStateChanged to OUT_OF_SYNC (drift detection)",
    _T.APPLICATION_HEALTHY: "ApplicationHealthChanged to healthy from unhealthy (drift's check)",
    _T.PIPED_STARTED: "ServiceStarted (a service process is ready: connected, consumers running)",
    _T.PIPED_STOPPED: "ServiceStopped (a service process stopped: drained, or crashed)",
    _T.STAGE_STARTED: "StageStarted (any stage; of WAIT_APPROVAL: DEPLOYMENT_WAIT_APPROVAL too)",
    _T.STAGE_SKIPPED: "StageCompleted with status SKIPPED",
    _T.STAGE_SUCCEEDED: "StageCompleted with status SUCCESS",
    _T.STAGE_FAILED: "StageCompleted with status FAILURE",
    _T.STAGE_CANCELLED: "StageCompleted with status CANCELLED",
}
"""What each type is made from, as the README's table says it."""

_COMPLETED: Final = {
    "SUCCESS": _T.DEPLOYMENT_SUCCEEDED,
    "FAILURE": _T.DEPLOYMENT_FAILED,
    "CANCELLED": _T.DEPLOYMENT_CANCELLED,
}
_STAGE_COMPLETED: Final = {
    "SUCCESS": _T.STAGE_SUCCEEDED,
    "FAILURE": _T.STAGE_FAILED,
    "CANCELLED": _T.STAGE_CANCELLED,
    "SKIPPED": _T.STAGE_SKIPPED,
}

_CHAIN_COMPLETED: Final = {
    "SUCCESS": _T.DEPLOYMENT_CHAIN_SUCCEEDED,
    "FAILURE": _T.DEPLOYMENT_CHAIN_FAILED,
    "CANCELLED": _T.DEPLOYMENT_CHAIN_CANCELLED,
}
_SYNC_STATES: Final = {"SYNCED": _T.APPLICATION_SYNCED, "OUT_OF_SYNC": _T.APPLICATION_OUT_OF_SYNC}

# The config's lists and these enums must agree, or a route could name a type nothing sends.
assert tuple(NotificationType) == NOTIFICATION_EVENTS
assert tuple(NotificationGroup) == NOTIFICATION_GROUPS


def notification_type_of(event: Event) -> NotificationType | None:
    """The notification `event` makes, or None (most events make none); its most specific
    type when it makes several (see `notification_types_of`)."""
    types = notification_types_of(event)
    return types[0] if types else None


def notification_types_of(event: Event) -> tuple[NotificationType, ...]:
    """The types a notification of `event` may have, most specific first; () for none.

    A plan that fails is a deployment that failed (PipeCD's planner sends
    `DEPLOYMENT_FAILED` for it), and Slipway has always called it
    `DEPLOYMENT_TRIGGER_FAILED` too: a route for either hears of it. Each
    receiver still gets one message, of the first type its routes take.
    """
    if isinstance(event, DeploymentPlanFailed):
        return (_T.DEPLOYMENT_TRIGGER_FAILED, _T.DEPLOYMENT_FAILED)
    if isinstance(event, StageStarted) and event.name == "WAIT_APPROVAL":
        return (_T.DEPLOYMENT_WAIT_APPROVAL, _T.STAGE_STARTED)
    type_ = _single_type_of(event)
    return (type_,) if type_ is not None else ()


def _single_type_of(event: Event) -> NotificationType | None:
    match event:
        case DeploymentTriggered():
            return _T.DEPLOYMENT_TRIGGERED
        case DeploymentPlanned():
            return _T.DEPLOYMENT_PLANNED
        case StageApproved():
            return _T.DEPLOYMENT_APPROVED
        case DeploymentRollingBack():
            return _T.DEPLOYMENT_ROLLING_BACK
        case DeploymentCompleted(status=status):
            return _COMPLETED.get(status)
        case DeploymentStarted():
            return _T.DEPLOYMENT_STARTED
        case StageStarted():
            return _T.STAGE_STARTED
        case StageCompleted(status=status):
            return _STAGE_COMPLETED.get(status)  # EXITED: the executor stopped, not the stage
        case ChainCompleted(status=status):
            return _CHAIN_COMPLETED.get(status)
        case ServiceStarted():
            return _T.PIPED_STARTED
        case ServiceStopped():
            return _T.PIPED_STOPPED
        case ApplicationSyncStateChanged(state=state):
            return _SYNC_STATES.get(state)
        case ApplicationHealthChanged(healthy=True, previous="UNHEALTHY"):
            # A recovery; a first check finding it healthy is no news.
            return _T.APPLICATION_HEALTHY
    return None
