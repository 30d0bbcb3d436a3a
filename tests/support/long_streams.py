"""Long streams and a store that counts what it reads: for the tests that hold a service's
cost per event flat however long a stream grows (issue 16: snapshots, incremental folds)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.eventlog import EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    DeploymentPlanned,
    DeploymentStarted,
    DeploymentTriggered,
    PlannedStage,
    StageCompleted,
    StageStarted,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_BATCH = 500  # events per append: several transactions, as a deployment's life writes them


class CountingStore(EventStore):
    """The real store, counting the events its stream reads return (`read_stream`, which
    `iter_stream` and `shared.snapshots.read_state` page through)."""

    rows = 0

    async def read_stream(self, stream_id: str, **kwargs: object) -> list[RecordedEvent]:
        page = await super().read_stream(stream_id, **kwargs)  # type: ignore[arg-type]
        self.rows += len(page)
        return page


def counting(store: EventStore) -> CountingStore:
    """A counting store over `store`'s pool and registry (its own decoded-snapshot cache)."""
    return CountingStore(store.pool, store.registry)


def long_pipeline(
    deployment_id: str, stages: int, *, done: int, app: str = "app1", kind: str = "K8S_SYNC"
) -> list[Event]:
    """A running deployment of `stages` stages of `kind` whose first `done` have started and
    succeeded: 3 + 2 × `done` events."""
    planned = tuple(
        PlannedStage(id=f"s{i}", name=vocabulary.StageName(kind), index=i) for i in range(stages)
    )
    events: list[Event] = [
        DeploymentTriggered(
            deployment_id=deployment_id,
            application_id=app,
            trigger=vocabulary.Trigger.ON_COMMIT,
            commit_hash="c0ffee1",
        ),
        DeploymentPlanned(
            deployment_id=deployment_id,
            application_id=app,
            commit_hash="c0ffee1",
            strategy=vocabulary.Strategy.PIPELINE,
            summary="a long pipeline",
            reason="the image changed",
            stages=planned,
        ),
        DeploymentStarted(deployment_id=deployment_id, application_id=app, started_at=T0),
    ]
    for stage in planned[:done]:
        events += [
            StageStarted(deployment_id=deployment_id, stage_id=stage.id, started_at=T0),
            StageCompleted(
                deployment_id=deployment_id,
                stage_id=stage.id,
                status=vocabulary.StageStatus.SUCCESS,
                completed_at=T0,
            ),
        ]
    return events


async def write_long(store: EventStore, stream: str, events: list[Event]) -> None:
    """Append `events` to `stream` a batch at a time."""
    for start in range(0, len(events), _BATCH):
        batch = new_events(events[start : start + _BATCH])
        await store.append(stream, batch, expected_version=None)
