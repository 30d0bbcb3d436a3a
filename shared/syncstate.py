"""An application's sync state, folded from the events that decide it (README "Sync state").

Pure, like a decider's `evolve`: no I/O, clock or logging; times come from
the events' `recorded_at`, so a replay gives the same answer. One fold for
everyone who needs the fact: the `applications` projection stores it, and
the drift service reads it to know when its verdict tells something new.

The state, from the application's own events (in log order):

- `UNKNOWN` before anything below has happened;
- `DEPLOYING` while a deployment of the application is triggered and has
  neither completed (`DeploymentCompleted`) nor failed to plan
  (`DeploymentPlanFailed`) — queued ones included;
- otherwise the latest of:
  - a deployment's end: `SUCCESS` → `SYNCED` (its commit becomes the
    running commit); `FAILURE`, `CANCELLED` or a plan failure →
    `OUT_OF_SYNC` (git's head is not what runs);
  - drift detection's verdict (`ApplicationSyncStateChanged`): `SYNCED` or
    `OUT_OF_SYNC`. A verdict recorded while a deployment is active is kept
    (it is shown as the latest drift report) but the state stays
    `DEPLOYING`.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from shared.events.base import Event
from shared.events.catalog import (
    ApplicationAdopted,
    ApplicationSyncStateChanged,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentRollingBack,
    DeploymentStarted,
    DeploymentTriggered,
)
from shared.events.vocabulary import SyncState

__all__ = ["SYNC_EVENTS", "Drift", "LastDeployment", "SyncState", "SyncStatus", "evolve"]


SYNC_EVENTS: tuple[type[Event], ...] = (
    DeploymentTriggered,
    DeploymentPlanned,
    DeploymentStarted,
    DeploymentRollingBack,
    DeploymentPlanFailed,
    DeploymentCompleted,
    ApplicationSyncStateChanged,
    ApplicationAdopted,
)
"""The events `evolve` reads; every one carries the `application_id` it is about."""

# Deployment statuses only move forward (shared/deployments.py): a late event
# of the last deployment never moves its shown status back.
_RANK = {"PENDING": 0, "PLANNED": 1, "RUNNING": 2, "ROLLING_BACK": 3}
_FINAL = 4


class LastDeployment(msgspec.Struct, frozen=True, kw_only=True):
    """The application's most recently triggered deployment, as far as the log says."""

    deployment_id: str
    status: str
    commit_hash: str
    at: datetime
    """When it reached `status`."""


class Drift(msgspec.Struct, frozen=True, kw_only=True):
    """Drift detection's latest verdict (`ApplicationSyncStateChanged`), with its diff in full."""

    state: str
    summary: str
    diff: str
    commit_hash: str
    at: datetime


class SyncStatus(msgspec.Struct, frozen=True, kw_only=True):
    """An application's sync state, why, and since when."""

    state: SyncState = SyncState.UNKNOWN
    reason: str = ""
    """Why the state is what it is, in a sentence."""
    since: datetime | None = None
    """When `state` was entered."""
    running_commit: str = ""
    """The commit of the last successful deployment (or the one adopted, before any)."""
    adopted_commit: str = ""
    """The commit that was running when `slipway app import` took the application over
    from PipeCD ("" when it was not adopted)."""
    last_deployment: LastDeployment | None = None
    drift: Drift | None = None
    active: tuple[str, ...] = ()
    """Deployments triggered and not ended: while there is one, the state is DEPLOYING."""
    settled: SyncState = SyncState.UNKNOWN
    """What the state is when no deployment is active."""
    settled_reason: str = ""


def evolve(status: SyncStatus, event: Event, at: datetime) -> SyncStatus:
    """The status after `event`, recorded at `at` (events of other kinds leave it as it is)."""
    replace = msgspec.structs.replace
    match event:
        case DeploymentTriggered():
            if event.deployment_id in status.active:
                return status
            status = replace(
                status,
                active=(*status.active, event.deployment_id),
                last_deployment=LastDeployment(
                    deployment_id=event.deployment_id,
                    status="PENDING",
                    commit_hash=event.commit_hash,
                    at=at,
                ),
            )
        case DeploymentPlanned() | DeploymentStarted() | DeploymentRollingBack():
            shown = {
                DeploymentPlanned: "PLANNED",
                DeploymentStarted: "RUNNING",
                DeploymentRollingBack: "ROLLING_BACK",
            }[type(event)]
            status = replace(status, last_deployment=_moved(status, event.deployment_id, shown, at))
        case DeploymentCompleted():
            status = _ended(
                status,
                event.deployment_id,
                event.status,
                at,
                SyncState.SYNCED if event.status == "SUCCESS" else SyncState.OUT_OF_SYNC,
                f"deployment {event.deployment_id} ended {event.status}",
            )
            if event.status == "SUCCESS":
                commit = event.commit_hash or _commit_of(status, event.deployment_id)
                status = replace(status, running_commit=commit or status.running_commit)
        case DeploymentPlanFailed():
            status = _ended(
                status,
                event.deployment_id,
                "FAILURE",
                at,
                SyncState.OUT_OF_SYNC,
                f"deployment {event.deployment_id} failed to plan: {_text(event.reason)}",
            )
        case ApplicationAdopted():
            # What runs now, as the import found it: the next deployment is planned against it.
            status = replace(
                status,
                running_commit=event.running_commit_hash,
                adopted_commit=event.running_commit_hash,
            )
        case ApplicationSyncStateChanged():
            state = SyncState.SYNCED if event.state == "SYNCED" else SyncState.OUT_OF_SYNC
            status = replace(
                status,
                drift=Drift(
                    state=event.state,
                    summary=_text(event.summary),
                    diff=_text(event.diff),
                    commit_hash=_text(event.commit_hash),
                    at=at,
                ),
                settled=state,
                settled_reason=f"drift detection: {_text(event.summary)}",
            )
        case _:
            return status
    return _shown(status, at)


def _text(value: str) -> str:
    """`value` without NUL characters, which the read model's jsonb refuses: a diff quotes
    live objects and manifests, and one NUL there must not stop the projection for good."""
    return value.replace("\x00", "\N{REPLACEMENT CHARACTER}")


def _moved(
    status: SyncStatus, deployment_id: str, shown: str, at: datetime
) -> LastDeployment | None:
    last = status.last_deployment
    if last is None or last.deployment_id != deployment_id:
        return last
    if _RANK.get(last.status, _FINAL) >= _RANK.get(shown, _FINAL):
        return last
    return msgspec.structs.replace(last, status=shown, at=at)


def _ended(
    status: SyncStatus,
    deployment_id: str,
    final: str,
    at: datetime,
    settled: SyncState,
    reason: str,
) -> SyncStatus:
    last = status.last_deployment
    if last is not None and last.deployment_id == deployment_id and last.status in _RANK:
        last = msgspec.structs.replace(last, status=final, at=at)
    if deployment_id not in status.active:
        # Ended before (a repeated end) or never triggered here: only what it says of itself.
        return msgspec.structs.replace(status, last_deployment=last)
    return msgspec.structs.replace(
        status,
        active=tuple(d for d in status.active if d != deployment_id),
        last_deployment=last,
        settled=settled,
        settled_reason=reason,
    )


def _commit_of(status: SyncStatus, deployment_id: str) -> str:
    last = status.last_deployment
    return last.commit_hash if last is not None and last.deployment_id == deployment_id else ""


def _shown(status: SyncStatus, at: datetime) -> SyncStatus:
    """`status` with `state`, `reason` and `since` derived from what is active and settled."""
    if status.active:
        state = SyncState.DEPLOYING
        reason = f"deployment {status.active[0]} is in progress"
        if len(status.active) > 1:
            reason += f" ({len(status.active) - 1} more queued)"
    else:
        state, reason = status.settled, status.settled_reason
    since = status.since if state == status.state else at
    return msgspec.structs.replace(status, state=state, reason=reason, since=since)
