"""Sources whose texts can grow record them clipped, so their events stay under the append cap."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from services.drift.decider import DriftState, Judge, RecordDeletion
from services.drift.decider import decide as decide_drift
from services.executor.decider import _completed, _deployment_completed
from services.gitwatcher.decider import (
    RegisteredApp,
    RepositoryState,
    decide_fetch_failed,
    on_commit_triggers,
)
from services.gitwatcher.handlers import on_command_trigger
from services.gitwatcher.watcher import RepositoryWatcher
from services.planner.decider import plan_failed
from shared.analysis.providers import MAX_SAMPLES, ProviderError, _parse_matrix
from shared.deployments import Deployment, DeploymentStatus, Stage, StageStatus
from shared.eventlog.store import DEFAULT_MAX_EVENT_BYTES
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationResourcesDeletionFailed,
    ApplicationSyncStateChanged,
    CommitObserved,
    DeploymentTriggered,
    SyncRequested,
    default_registry,
)
from shared.git import Commit
from shared.planning.drift import DriftResult
from shared.redaction import COMMIT_MESSAGE_CHARS, DIFF_CHARS, REASON_CHARS, clip, excerpt
from shared.triggers import TriggerConfig

HUGE = "é" * (2 * 1024 * 1024)  # 2 Mi characters, 4 MiB in UTF-8


def encoded_size(event: Event) -> int:
    return len(default_registry().encode(event)[2])


def assert_clipped(text: str, limit: int) -> None:
    assert len(text) <= limit
    assert text.endswith(f"({len(HUGE) - text.index('…')} more characters)")


def test_clip_keeps_short_texts_and_says_how_much_it_cut() -> None:
    assert clip("short", 10) == "short"
    clipped = clip("x" * 1000, 100)
    assert len(clipped) <= 100 and clipped.startswith("x" * 50)
    assert clipped.endswith(f"({1000 - clipped.index('…')} more characters)")
    assert clip(clipped, 100) == clipped  # clipping again changes nothing
    assert excerpt("y" * 1000, 100).endswith("more characters)")


def test_commit_messages_are_clipped_where_observed_and_triggered() -> None:
    """A 2 MiB commit message: CommitObserved, and both kinds of DeploymentTriggered, fit."""
    spec = SimpleNamespace(repository_id="r1", branch="main")
    commit = Commit(
        hash="c1", parent="", author="a", email="e", message=HUGE, committed_at="2026-01-01"
    )
    observed = RepositoryWatcher._observed(
        SimpleNamespace(spec=spec),  # type: ignore[arg-type]
        commit,
        ["web/a.yaml"],
        "",
        "poll",
    )
    assert_clipped(observed.message, COMMIT_MESSAGE_CHARS)
    # An observation recorded before the clip still triggers a deployment that fits.
    old = CommitObserved(repository_id="r1", branch="main", commit_hash="c1", message=HUGE)
    app = RegisteredApp(
        application_id="web",
        name="web",
        path="web",
        config_filename="app.pipecd.yaml",
        trigger=TriggerConfig(),
    )
    [on_commit] = on_commit_triggers(old, [app], ["web/a.yaml"])
    on_command = on_command_trigger(
        SyncRequested(application_id="web", request_id="q1"),
        repository_id="r1",
        branch="main",
        commit_hash="c1",
        commit_author="a",
        commit_message=HUGE,
    )
    for event in (observed, on_commit, on_command):
        message = event.message if isinstance(event, CommitObserved) else event.commit_message
        assert_clipped(message, COMMIT_MESSAGE_CHARS)
        assert encoded_size(event) < DEFAULT_MAX_EVENT_BYTES
    assert isinstance(on_commit, DeploymentTriggered)


def test_failure_reasons_are_clipped() -> None:
    """Plan failures, stage and deployment failures, fetch failures record at most
    REASON_CHARS characters of their reason."""
    trigger = DeploymentTriggered(
        deployment_id="d1",
        application_id="web",
        trigger=vocabulary.Trigger("on_commit"),
        commit_hash="c",
    )
    state = Deployment(deployment_id="d1", application_id="web")
    stage = Stage(id="s1", name="SCRIPT_RUN", index=0)
    now = datetime.now(UTC)
    events: list[Event] = [
        plan_failed(trigger, HUGE),
        _completed(state, stage, StageStatus.FAILURE, HUGE, now),
        _deployment_completed(state, DeploymentStatus.FAILURE, HUGE),
        *decide_fetch_failed(
            RepositoryState(), repository_id="r1", kind="x", reason=HUGE, attempt=1, retry_in_s=1
        ),
    ]
    for event in events:
        reason = getattr(event, "reason", "")  # each of these events has one
        assert len(reason) <= REASON_CHARS and reason.endswith("more characters)"), event
        assert encoded_size(event) < DEFAULT_MAX_EVENT_BYTES


def test_a_prometheus_answer_with_too_many_samples_is_an_error_naming_its_size() -> None:
    values = [[1700000000 + i, "1"] for i in range(MAX_SAMPLES + 1)]
    body = {"status": "success", "data": {"resultType": "matrix", "result": [{"values": values}]}}
    with pytest.raises(
        ProviderError, match=f"{MAX_SAMPLES + 1} samples, more than the {MAX_SAMPLES}"
    ):
        _parse_matrix("prom", 200, json.dumps(body))
    body["data"]["result"] = [{"values": values[:MAX_SAMPLES]}]  # type: ignore[index]
    assert len(_parse_matrix("prom", 200, json.dumps(body)).values) == MAX_SAMPLES


def test_drift_records_a_clipped_diff_and_summary_once() -> None:
    """A huge drift diff is clipped; the same drift decided again (the state holding the
    clipped summary) records nothing new, and a huge deletion failure is clipped once too."""
    result = DriftResult("OUT_OF_SYNC", HUGE, HUGE)
    judge = Judge(
        result=result,
        application_id="web",
        commit_hash="c",
        on_out_of_sync=False,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    recorded = decide_drift(DriftState(), judge)
    [changed] = recorded
    assert isinstance(changed, ApplicationSyncStateChanged)
    assert len(changed.diff) <= DIFF_CHARS and changed.diff.endswith("more characters)")
    assert len(changed.summary) <= REASON_CHARS
    assert encoded_size(changed) < DEFAULT_MAX_EVENT_BYTES
    state = DriftState(state=changed.state, summary=changed.summary)
    assert decide_drift(state, judge) == []
    attempt = RecordDeletion(application_id="web", deleted=(), error=HUGE)
    [failed] = decide_drift(DriftState(), attempt)
    assert isinstance(failed, ApplicationResourcesDeletionFailed)
    assert len(failed.reason) <= REASON_CHARS
    again = DriftState(deletion_failure=failed.reason)
    assert decide_drift(again, attempt) == []
