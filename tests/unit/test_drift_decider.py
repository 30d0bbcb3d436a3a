"""Drift's pure decider: verdicts, the onOutOfSync trigger and its minWindow, on a given clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.drift.decider import DRIFT, DriftState, Judge, trigger_of
from shared.decider import fold
from shared.events.ids import drift_deployment_id
from shared.planning.drift import DriftResult
from shared.planning.drift import SyncState as Verdict

DONE = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _judge(state: Verdict, *, after_s: float, window_s: float = 300) -> Judge:
    return Judge(
        result=DriftResult(state, "1 resource differs", "diff"),
        application_id="web",
        commit_hash="c1",
        on_out_of_sync=True,
        now=DONE + timedelta(seconds=after_s),
        last_completed_at=DONE,
        min_window=timedelta(seconds=window_s),
    )


def test_the_trigger_waits_for_min_window_on_the_clock_it_is_given() -> None:
    """No trigger until `now` reaches the last completion plus minWindow; then one, derived."""
    assert trigger_of(_judge("OUT_OF_SYNC", after_s=299.9)) is None
    trigger = trigger_of(_judge("OUT_OF_SYNC", after_s=300))
    assert trigger is not None and trigger.trigger == "on_out_of_sync"
    assert trigger.deployment_id == drift_deployment_id("web", "c1")
    assert trigger_of(_judge("SYNCED", after_s=999)) is None


def test_a_verdict_is_recorded_once() -> None:
    """The same verdict decided on the state it produced records nothing."""
    judge = _judge("OUT_OF_SYNC", after_s=0)
    first = DRIFT.decide(DriftState(), judge)
    assert len(first) == 1
    assert DRIFT.decide(fold(DRIFT, first), judge) == []
