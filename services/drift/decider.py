"""Drift's pure core: what a verdict or a cascade delete records on `drift-<application_id>`.

No I/O, clock, ids or logging: the shell reads the clusters and git, then
hands what it found to `decide` inside a command, with the time (`now`) it
read from its own clock, so a decision replays exactly:

- `Judge`: a drift verdict (`shared.planning.drift.detect_drift`'s result).
  `ApplicationSyncStateChanged` is recorded only when the state or the summary
  changes, or when the state contradicts the application's sync state as its
  events derive it (`current`, `shared.syncstate`): a deployment that ended
  since the last verdict may have set it otherwise. `trigger_of` says whether
  the verdict asks for an `onOutOfSync` deployment (on `deployment-<id>`, a
  stream of its own, opened by `shared.decider.OPENING`).
- `RecordDeletion`: the outcome of one cascade-delete attempt, recorded when
  it is new, so retrying each round with the same refusal appends nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from shared.decider import Functions
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationHealthChanged,
    ApplicationResourcesDeleted,
    ApplicationResourcesDeletionFailed,
    ApplicationSyncStateChanged,
    DeploymentTriggered,
)
from shared.events.ids import drift_deployment_id
from shared.events.vocabulary import Trigger
from shared.planning.drift import DriftResult
from shared.planning.health import Health
from shared.redaction import DIFF_CHARS, REASON_CHARS, clip
from shared.syncstate import SyncState

__all__ = [
    "DRIFT",
    "Command",
    "DriftState",
    "Judge",
    "RecordDeletion",
    "decide",
    "evolve",
    "trigger_of",
    "window_elapsed",
]


@dataclass(frozen=True)
class DriftState:
    """What the `drift-<id>` stream says so far."""

    state: str = ""
    summary: str = ""
    healthy: bool | None = None
    """The last recorded health (None: never recorded)."""
    resources_deleted: bool = False
    deletion_failure: str = ""
    """The reason of the last failed cascade delete ("" when none failed)."""


def evolve(state: DriftState, event: Event) -> DriftState:
    """The drift state after `event` (pure)."""
    match event:
        case ApplicationSyncStateChanged(state=s, summary=summary):
            return dataclasses.replace(state, state=s, summary=summary)
        case ApplicationHealthChanged(healthy=healthy):
            return dataclasses.replace(state, healthy=healthy)
        case ApplicationResourcesDeleted():
            return dataclasses.replace(state, resources_deleted=True, deletion_failure="")
        case ApplicationResourcesDeletionFailed(reason=reason):
            return dataclasses.replace(state, deletion_failure=reason)
    return state


# Commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Judge:
    """Record a drift verdict for the application at `commit_hash`, judged at `now`."""

    result: DriftResult
    application_id: str
    commit_hash: str
    on_out_of_sync: bool
    """`trigger.onOutOfSync` is enabled: an out-of-sync verdict asks for a deployment."""
    now: datetime
    repository_id: str = ""
    last_completed_at: datetime | None = None
    """When the application's last deployment completed (None: never)."""
    min_window: timedelta = timedelta(0)
    """`trigger.onOutOfSync.minWindow`: no trigger sooner than this after a deployment."""
    current: str = ""
    """The application's sync state as its events derive it ("" when unknown)."""
    health: Health | None = None
    """The live workloads' health (`shared.planning.health`), read with the drift."""


@dataclass(frozen=True)
class RecordDeletion:
    """One cascade-delete attempt: what was deleted, what the cluster refused, or why not.

    `failures` are (key, reason) of objects the cluster refused; `error` is why
    the attempt could not even start (no such platform provider, listing refused).
    """

    application_id: str
    deleted: Sequence[str] = ()
    failures: Sequence[tuple[str, str]] = ()
    error: str = ""


Command = Judge | RecordDeletion


def decide(state: DriftState, command: Command) -> list[Event]:
    """The events `command` records on `drift-<id>` (none when nothing is new)."""
    match command:
        case Judge():
            return _judged(state, command)
        case RecordDeletion():
            return _deletion(state, command)


def _judged(state: DriftState, judge: Judge) -> list[Event]:
    return _sync_changed(state, judge) + _health_changed(state, judge)


def _health_changed(state: DriftState, judge: Judge) -> list[Event]:
    """Health is recorded when it differs from the last recorded (or none was)."""
    health = judge.health
    if health is None or health.healthy == state.healthy:
        return []
    previous = "" if state.healthy is None else "HEALTHY" if state.healthy else "UNHEALTHY"
    return [
        ApplicationHealthChanged(
            application_id=judge.application_id,
            healthy=health.healthy,
            summary=clip(health.summary, REASON_CHARS),
            previous=previous,
        )
    ]


def _sync_changed(state: DriftState, judge: Judge) -> list[Event]:
    result, current = judge.result, judge.current
    contradicted = current in (SyncState.SYNCED, SyncState.OUT_OF_SYNC) and result.state != current
    # Clipped before comparing: the state holds what was recorded.
    summary = clip(result.summary, REASON_CHARS)
    if (result.state, summary) == (state.state, state.summary) and not contradicted:
        return []
    return [
        ApplicationSyncStateChanged(
            application_id=judge.application_id,
            state=SyncState(result.state),
            summary=summary,
            diff=clip(result.diff, DIFF_CHARS),
            commit_hash=judge.commit_hash,
        )
    ]


def window_elapsed(last_completed_at: datetime | None, now: datetime, window: timedelta) -> bool:
    """Whether `window` has passed since the last deployment completed (or there was none)."""
    return last_completed_at is None or now - last_completed_at >= window


def trigger_of(judge: Judge) -> DeploymentTriggered | None:
    """The `onOutOfSync` deployment a verdict asks for, if any.

    Asked for on every round the application is out of sync and `minWindow` has
    passed since its last deployment (PipeCD's rule: no redeploy storm right
    after a deploy); its id is derived from app and commit, so asking again
    appends nothing.
    """
    if judge.result.state != SyncState.OUT_OF_SYNC or not judge.on_out_of_sync:
        return None
    if not window_elapsed(judge.last_completed_at, judge.now, judge.min_window):
        return None
    return DeploymentTriggered(
        deployment_id=drift_deployment_id(judge.application_id, judge.commit_hash),
        application_id=judge.application_id,
        trigger=Trigger.ON_OUT_OF_SYNC,
        commit_hash=judge.commit_hash,
        repository_id=judge.repository_id,
    )


def _deletion(state: DriftState, attempt: RecordDeletion) -> list[Event]:
    failures, deleted = attempt.failures, tuple(attempt.deleted)
    if not failures and not attempt.error:
        return [
            ApplicationResourcesDeleted(application_id=attempt.application_id, resources=deleted)
        ]
    reason = attempt.error or failures[0][1]
    if len(failures) > 1:
        reason += f" (and {len(failures) - 1} more refused)"
    reason = clip(reason, REASON_CHARS)  # before comparing: the state holds what was recorded
    if reason == state.deletion_failure and not deleted:
        return []
    return [
        ApplicationResourcesDeletionFailed(
            application_id=attempt.application_id,
            reason=reason,
            deleted=deleted,
            remaining=tuple(key for key, _ in failures),
        )
    ]


DRIFT: Final = Functions[DriftState, Command](DriftState(), evolve, decide)
"""`drift-<application_id>`: sync-state verdicts and cascade-delete outcomes."""
