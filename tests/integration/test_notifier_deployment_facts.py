"""The notifier folds a deployment's stream on from its last event, against a real PostgreSQL.

A deployment with many approval stages makes a notification at most of its
events. Each needs the deployment's facts as of that event; the notifier must
read each of the stream's events about once in all, not the whole stream again
per event — and the facts must be exactly those of a fold from the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.notifier.notify.facts import fold_deployment
from services.notifier.service import Notifier
from services.notifier.targets import Target
from shared.config.control import NotificationRoute
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentTriggered,
    PlannedStage,
    StageApproved,
    StageCompleted,
    StageStarted,
    default_registry,
)
from shared.events.streams import application_stream, deployment_stream
from shared.ids import new_id

APPROVALS = 40
NOW = datetime(2026, 1, 1, tzinfo=UTC)
HOOK = Target(name="hook", kind="webhook", url="http://receiver.invalid/")


class CountingStore(EventStore):
    """The real store, counting the events it reads from deployment streams."""

    deployment_events_read = 0

    async def read_stream(self, stream_id: str, **kw: Any) -> list[RecordedEvent]:
        events = await super().read_stream(stream_id, **kw)
        if stream_id.startswith("deployment-"):
            self.deployment_events_read += len(events)
        return events


def _long_deployment(app: str, deployment: str) -> list[Event]:
    stages = tuple(
        PlannedStage(id=f"s{n}", name=vocabulary.StageName("WAIT_APPROVAL"), index=n)
        for n in range(APPROVALS)
    )
    events: list[Event] = [
        DeploymentTriggered(
            deployment_id=deployment,
            application_id=app,
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash="3f786850e387550fdab836ed7e6dc881de23001b",
        ),
        DeploymentPlanned(
            deployment_id=deployment,
            application_id=app,
            commit_hash="3f786850e387550fdab836ed7e6dc881de23001b",
            strategy=vocabulary.Strategy("pipeline"),
            summary="many approvals",
            reason="test",
            stages=stages,
        ),
    ]
    for stage in stages:
        events += [
            StageStarted(
                deployment_id=deployment, stage_id=stage.id, started_at=NOW, name="WAIT_APPROVAL"
            ),
            StageApproved(deployment_id=deployment, stage_id=stage.id, approver=f"u{stage.index}"),
            StageCompleted(
                deployment_id=deployment,
                stage_id=stage.id,
                status=vocabulary.StageStatus("SUCCESS"),
            ),
        ]
    events.append(
        DeploymentCompleted(
            deployment_id=deployment,
            application_id=app,
            status=vocabulary.DeploymentStatus("SUCCESS"),
        )
    )
    return events


async def _handle_in_order(
    notifier: Notifier, store: EventStore, history: Sequence[RecordedEvent]
) -> None:
    async with store.pool.acquire() as conn:
        for recorded in history:
            async with conn.transaction():
                await notifier.handle(recorded, conn)


async def test_each_deployment_event_is_read_about_once_and_facts_match_a_full_fold(
    pool: asyncpg.Pool,
) -> None:
    store = CountingStore(pool, default_registry())
    app, deployment = new_id(), new_id()
    await store.append(
        application_stream(app),
        new_events(
            [ApplicationRegistered(application_id=app, name="web", repository_id="r", path="web")]
        ),
        expected_version=NO_STREAM,
    )
    events = _long_deployment(app, deployment)
    await store.append(
        deployment_stream(deployment), new_events(events), expected_version=NO_STREAM
    )
    history = await store.read_stream(deployment_stream(deployment))
    store.deployment_events_read = 0
    notifier = Notifier(
        store=store,
        routes=[NotificationRoute(name="all", receiver="hook")],
        targets={"hook": HOOK},
    )

    await _handle_in_order(notifier, store, history)

    # Before: the whole stream up to each notified event, ~80 × 60 events here.
    assert store.deployment_events_read <= len(history), store.deployment_events_read
    scheduled = await pool.fetchval(
        "SELECT count(*) FROM events WHERE stream_id LIKE 'notification-%'"
    )
    # At least: waiting for approval and approved, ×40; triggered, planned, succeeded.
    assert scheduled >= 2 * APPROVALS + 3

    # The facts as of each event are a fold from the start, also out of order (redelivery).
    async with pool.acquire() as conn:
        for recorded in [*history[::7], history[3], history[-1], history[1]]:
            expected = fold_deployment(
                deployment, (e.event for e in history[: recorded.stream_version + 1])
            )
            assert await notifier.deployments.facts_at(deployment, recorded, conn) == expected
