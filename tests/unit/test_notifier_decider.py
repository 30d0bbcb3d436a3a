"""The notifier's pure decider: which notifications an event makes, and each only once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.notifier.decider import SCHEDULING, routed, schedule
from services.notifier.targets import Target
from shared.config.control import NotificationRoute
from shared.decider import fold
from shared.events import vocabulary
from shared.events.base import Metadata, RecordedEvent
from shared.events.catalog import ApplicationDisabled, DeploymentCompleted
from shared.events.ids import notification_id_of

HOOK = Target(name="hook", kind="webhook", url="http://receiver.invalid/")


def _recorded(event: DeploymentCompleted | ApplicationDisabled) -> RecordedEvent:
    return RecordedEvent(
        global_position=7, tx_id=7, stream_id="deployment-d1", stream_version=3,
        event_id=uuid.UUID(int=7), event_type="deployment_completed", schema_version=1,
        event=event, metadata=Metadata(), recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip


def test_an_event_no_route_takes_schedules_nothing_and_reads_nothing() -> None:
    """`routed` is False for an event no route takes, so the shell reads no stream for it."""
    failures_only = [NotificationRoute(name="r", receiver="hook", events=("DEPLOYMENT_FAILED",))]
    succeeded = DeploymentCompleted(
        deployment_id="d1", application_id="a", status=vocabulary.DeploymentStatus("SUCCESS")
    )
    assert not routed(failures_only, succeeded)
    failed = DeploymentCompleted(
        deployment_id="d1", application_id="a", status=vocabulary.DeploymentStatus("FAILURE")
    )
    assert routed(failures_only, failed)


def test_one_message_per_receiver_under_an_id_derived_from_event_and_receiver() -> None:
    """Two routes to one receiver make one notification; an unnamed receiver is reported."""
    routes = [
        NotificationRoute(name="a", receiver="hook"),
        NotificationRoute(name="b", receiver="hook"),
        NotificationRoute(name="c", receiver="gone"),
    ]
    failed = _recorded(
        DeploymentCompleted(
            deployment_id="d1", application_id="a", status=vocabulary.DeploymentStatus("FAILURE")
        )
    )
    made, unknown = schedule(failed, None, None, routes=routes, targets={"hook": HOOK})
    assert unknown == ["gone"]
    [only] = made
    assert only.event.notification_id == notification_id_of(str(uuid.UUID(int=7)), "hook")
    assert only.event.source_stream_id == "deployment-d1" and only.event.body


def test_a_notification_stream_schedules_once() -> None:
    """`SCHEDULING` decides the notification on an empty stream and nothing once it holds it."""
    failed = _recorded(
        DeploymentCompleted(
            deployment_id="d1", application_id="a", status=vocabulary.DeploymentStatus("FAILURE")
        )
    )
    routes = [NotificationRoute(name="a", receiver="hook")]
    [made], _ = schedule(failed, None, None, routes=routes, targets={"hook": HOOK})
    first = SCHEDULING.decide(SCHEDULING.initial_state(), made.event)
    assert first == [made.event]
    assert SCHEDULING.decide(fold(SCHEDULING, first), made.event) == []
