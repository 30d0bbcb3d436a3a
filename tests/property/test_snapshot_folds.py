"""Snapshots of long streams (`shared.stream_folds`, `shared/snapshots.py`): a state folded
up to any version, stored as a snapshot and decoded again, then folded over the rest of the
stream, is exactly the state folded from the stream's start, byte for byte (times keep
their zones), for generated deployment and application streams."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import vocabulary
from shared.events.base import Event, Metadata, RecordedEvent
from shared.events.catalog import (
    ApplicationDeleted,
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationRegistered,
    DeploymentCancelRequested,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentQueued,
    DeploymentRollingBack,
    DeploymentStarted,
    DeploymentTriggered,
    PlannedStage,
    StageApproved,
    StageCompleted,
    StageSkipRequested,
    StageStarted,
    SyncRequested,
)
from shared.stream_folds import APPLICATION, DEPLOYMENT, StreamFold

D = "d1"
A = "app1"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])
_STAGE_NAMES = ("WAIT", "WAIT_APPROVAL", "ANALYSIS", "K8S_SYNC")


@st.composite
def times(draw: st.DrawFn) -> datetime:
    return (T0 + timedelta(seconds=draw(st.integers(0, 10_000)))).astimezone(draw(_ZONES))


@st.composite
def plans(draw: st.DrawFn) -> DeploymentPlanned:
    names = draw(st.lists(st.sampled_from(_STAGE_NAMES), min_size=1, max_size=6))
    stages = tuple(
        PlannedStage(
            id=f"s{i}",
            name=vocabulary.StageName(name),
            index=i,
            visible=draw(st.booleans()) or i == 0,
            options_json='{"approvers": ["alice", "bob"], "minApproverNum": 2}'
            if name == "WAIT_APPROVAL"
            else "{}",
        )
        for i, name in enumerate(names)
    )
    return DeploymentPlanned(
        deployment_id=D,
        application_id=A,
        commit_hash="c0ffee",
        strategy=vocabulary.Strategy.PIPELINE,
        summary="image web: v1 → v2",
        reason="the image changed",
        stages=stages,
        skipped={"s0": "skip on"} if draw(st.booleans()) else {},
    )


_STAGE_IDS = st.sampled_from([f"s{i}" for i in range(7)])
_WHO = st.sampled_from(["alice", "bob", "carol"])
deployment_events: st.SearchStrategy[Event] = st.one_of(
    st.just(
        DeploymentTriggered(
            deployment_id=D,
            application_id=A,
            trigger=vocabulary.Trigger.ON_COMMIT,
            commit_hash="c0ffee",
        )
    ),
    st.just(DeploymentQueued(deployment_id=D, application_id=A, behind_deployment_id="d0")),
    plans(),
    st.just(DeploymentPlanFailed(deployment_id=D, application_id=A, reason="no")),
    st.builds(
        DeploymentStarted, deployment_id=st.just(D), application_id=st.just(A), started_at=times()
    ),
    st.builds(StageStarted, deployment_id=st.just(D), stage_id=_STAGE_IDS, started_at=times()),
    st.builds(
        StageCompleted,
        deployment_id=st.just(D),
        stage_id=_STAGE_IDS,
        status=st.sampled_from([vocabulary.StageStatus.SUCCESS, vocabulary.StageStatus.FAILURE]),
        completed_at=st.none() | times(),
    ),
    st.builds(StageApproved, deployment_id=st.just(D), stage_id=_STAGE_IDS, approver=_WHO),
    st.builds(StageSkipRequested, deployment_id=st.just(D), stage_id=_STAGE_IDS, commander=_WHO),
    st.builds(DeploymentCancelRequested, deployment_id=st.just(D), commander=_WHO),
    st.just(DeploymentRollingBack(deployment_id=D, application_id=A)),
    st.just(
        DeploymentCompleted(
            deployment_id=D, application_id=A, status=vocabulary.DeploymentStatus.SUCCESS
        )
    ),
)


@st.composite
def application_events(draw: st.DrawFn) -> Event:
    name = draw(st.sampled_from(["web", "api"]))
    event: Event = draw(
        st.sampled_from(
            [
                ApplicationRegistered(
                    application_id=A,
                    name=name,
                    repository_id="r",
                    path="apps/web",
                    labels=(("env", name),),
                ),
                ApplicationDisabled(application_id=A),
                ApplicationEnabled(application_id=A),
                ApplicationDeleted(application_id=A),
                SyncRequested(application_id=A, request_id="q1"),
            ]
        )
    )
    return event


def recorded(
    stream_id: str, events: list[Event], recorded_at: list[datetime]
) -> list[RecordedEvent]:
    return [
        RecordedEvent(
            global_position=10 + 3 * version,
            tx_id=100 + version,
            stream_id=stream_id,
            stream_version=version,
            event_id=uuid.uuid4(),
            event_type=type(event).__struct_config__.tag,  # type: ignore[arg-type]
            schema_version=1,
            event=event,
            metadata=Metadata(),
            recorded_at=at,
        )
        for version, (event, at) in enumerate(zip(events, recorded_at, strict=True))
    ]


def check_splits(fold: StreamFold[Any], stream_id: str, history: list[RecordedEvent]) -> None:
    whole = fold.fold(stream_id, None, history)
    expected = fold.encode(whole) if whole is not None else None
    for split in range(len(history) + 1):
        head = fold.fold(stream_id, None, history[:split])
        start = fold.decode(fold.encode(head)) if head is not None else None
        assert start == head
        again = fold.fold(stream_id, start, history[split:])
        assert (fold.encode(again) if again is not None else None) == expected, split


@settings(max_examples=60, deadline=None)
@given(
    st.lists(deployment_events, max_size=16).flatmap(
        lambda events: st.tuples(
            st.just(events), st.lists(times(), min_size=len(events), max_size=len(events))
        )
    )
)
def test_a_deployment_from_any_snapshot_is_the_deployment_from_its_start(
    drawn: tuple[list[Event], list[datetime]],
) -> None:
    events, at = drawn
    check_splits(DEPLOYMENT, f"deployment-{D}", recorded(f"deployment-{D}", events, at))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(application_events(), max_size=12).flatmap(
        lambda events: st.tuples(
            st.just(events), st.lists(times(), min_size=len(events), max_size=len(events))
        )
    )
)
def test_an_application_from_any_snapshot_is_the_application_from_its_start(
    drawn: tuple[list[Event], list[datetime]],
) -> None:
    events, at = drawn
    check_splits(APPLICATION, f"application-{A}", recorded(f"application-{A}", events, at))


def test_the_code_version_follows_the_state_types_shape_and_the_revision() -> None:
    """A snapshot of another shape or revision is not read: the version names both."""
    narrow = msgspec.defstruct("State", [("a", int, 0)])
    wider = msgspec.defstruct("State", [("a", int, 0), ("b", str, "")])

    def keep(_s: str, state: Any, _h: Any) -> Any:
        return state

    one = StreamFold("x", narrow, keep).code_version
    assert StreamFold("x", narrow, keep).code_version == one
    assert StreamFold("x", wider, keep).code_version != one
    assert StreamFold("x", narrow, keep, revision=2).code_version != one
