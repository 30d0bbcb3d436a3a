"""The sync-state fold (`shared.syncstate`), drift's use of it, and config-label decisions: pure."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationAdopted,
    ApplicationSyncStateChanged,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentStarted,
    DeploymentTriggered,
)
from shared.syncstate import SyncState, SyncStatus, evolve

APP = "app1"
T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def _fold(*events: Event) -> SyncStatus:
    timed = [(event, T0 + timedelta(seconds=i)) for i, event in enumerate(events)]
    return functools.reduce(lambda s, pair: evolve(s, *pair), timed, SyncStatus())


def _triggered(deployment: str, commit: str = "c1") -> DeploymentTriggered:
    return DeploymentTriggered(
        deployment_id=deployment,
        application_id=APP,
        trigger=vocabulary.Trigger("on_command"),
        commit_hash=commit,
    )


def _completed(deployment: str, status: str = "SUCCESS", commit: str = "c1") -> DeploymentCompleted:
    return DeploymentCompleted(
        deployment_id=deployment,
        application_id=APP,
        status=vocabulary.DeploymentStatus(status),
        commit_hash=commit,
    )


def _drift(state: str, summary: str = "1 resource differs") -> ApplicationSyncStateChanged:
    return ApplicationSyncStateChanged(
        application_id=APP,
        state=vocabulary.SyncState(state),
        summary=summary,
        diff="- a\n+ b",
        commit_hash="c1",
    )


def test_state_moves_unknown_deploying_synced_out_of_sync() -> None:
    """UNKNOWN → DEPLOYING (triggered) → SYNCED (success, running commit) → OUT_OF_SYNC (drift)."""
    assert _fold().state is SyncState.UNKNOWN
    deploying = _fold(_triggered("d1"))
    assert deploying.state is SyncState.DEPLOYING
    assert deploying.last_deployment is not None
    assert deploying.last_deployment.status == "PENDING"
    started = _fold(
        _triggered("d1"),
        DeploymentPlanned(
            deployment_id="d1",
            application_id=APP,
            commit_hash="c1",
            strategy=vocabulary.Strategy("quick_sync"),
            summary="",
            reason="",
            stages=(),
        ),
        DeploymentStarted(deployment_id="d1", application_id=APP, started_at=T0),
    )
    assert started.state is SyncState.DEPLOYING
    assert started.last_deployment is not None and started.last_deployment.status == "RUNNING"
    synced = _fold(_triggered("d1"), _completed("d1", commit="c1"))
    assert (synced.state, synced.running_commit) == (SyncState.SYNCED, "c1")
    assert synced.last_deployment is not None and synced.last_deployment.status == "SUCCESS"
    drifted = _fold(_triggered("d1"), _completed("d1"), _drift("OUT_OF_SYNC"))
    assert drifted.state is SyncState.OUT_OF_SYNC
    assert drifted.drift is not None and drifted.drift.diff == "- a\n+ b"
    assert drifted.since == T0 + timedelta(seconds=2)


def test_deploying_lasts_while_any_deployment_is_active_and_drift_waits_behind_it() -> None:
    """Two triggered (one queued): DEPLOYING until both end; a verdict meanwhile is only kept."""
    status = _fold(_triggered("d1"), _triggered("d2", "c2"), _completed("d1"), _drift("SYNCED"))
    assert status.state is SyncState.DEPLOYING
    assert status.drift is not None and status.drift.state == "SYNCED"
    assert status.last_deployment is not None and status.last_deployment.deployment_id == "d2"
    ended = evolve(status, _completed("d2", commit="c2"), T0 + timedelta(minutes=1))
    assert (ended.state, ended.running_commit) == (SyncState.SYNCED, "c2")


def test_failed_cancelled_or_unplannable_deployments_leave_it_out_of_sync() -> None:
    """A deployment that did not succeed leaves git's head undeployed: OUT_OF_SYNC, commit kept."""
    for end in (
        _completed("d2", "FAILURE", "c2"),
        _completed("d2", "CANCELLED", "c2"),
        DeploymentPlanFailed(deployment_id="d2", application_id=APP, reason="bad yaml"),
    ):
        status = _fold(_triggered("d1"), _completed("d1"), _triggered("d2", "c2"), end)
        assert (status.state, status.running_commit) == (SyncState.OUT_OF_SYNC, "c1")
        assert "d2" in status.reason


def test_a_repeated_or_foreign_end_changes_nothing() -> None:
    """A completion seen twice, or of a deployment never triggered here, does not move the state."""
    status = _fold(_triggered("d1"), _completed("d1"), _drift("OUT_OF_SYNC"))
    assert evolve(status, _completed("d1"), T0 + timedelta(hours=1)) == status
    assert evolve(status, _completed("dx", commit="cx"), T0 + timedelta(hours=1)).state is (
        SyncState.OUT_OF_SYNC
    )


def test_text_quoted_from_outside_never_carries_a_nul() -> None:
    """A NUL in a drift diff or a plan failure (quoted manifests) is replaced: jsonb refuses it."""
    status = _fold(
        _triggered("d1"),
        DeploymentPlanFailed(deployment_id="d1", application_id=APP, reason="bad \x00 yaml"),
        ApplicationSyncStateChanged(
            application_id=APP,
            state=vocabulary.SyncState("OUT_OF_SYNC"),
            summary="x\x00",
            diff="- a\x00\n+ b",
        ),
    )
    assert status.drift is not None
    assert "\x00" not in status.drift.summary + status.drift.diff + status.reason
    assert status.drift.diff == "- a\N{REPLACEMENT CHARACTER}\n+ b"
    failed = _fold(
        _triggered("d1"),
        DeploymentPlanFailed(deployment_id="d1", application_id=APP, reason="bad \x00 yaml"),
    )
    assert failed.reason == "deployment d1 failed to plan: bad \N{REPLACEMENT CHARACTER} yaml"


def test_an_adoption_is_the_running_commit_until_slipway_deploys_another() -> None:
    adopted = ApplicationAdopted(application_id=APP, running_commit_hash="pipecd1")
    status = _fold(adopted)
    assert (status.running_commit, status.adopted_commit) == ("pipecd1", "pipecd1")
    assert status.state == SyncState.UNKNOWN  # drift has not compared anything yet
    status = _fold(adopted, _triggered("d1", "c2"), _completed("d1", commit="c2"))
    assert (status.running_commit, status.adopted_commit) == ("c2", "pipecd1")
    failed = _fold(adopted, _triggered("d1", "c2"), _completed("d1", "FAILURE", commit="c2"))
    assert failed.running_commit == "pipecd1"
