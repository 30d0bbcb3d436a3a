"""A long history for the scale benchmark: a realistic mix of events, written fast.

`write_history` appends deployments of the registered applications until the
log holds the events asked for: dev applications quick-sync (triggered,
planned, started, one K8S_SYNC stage, completed: 6 events), prd applications
run the seed's four-stage pipeline (12 events); every twentieth deployment
fails. Besides those, one application stream is long (`slipway app sync`
asked `LONG_APP_SYNCS` times) and one deployment is long (a pipeline of
`LONG_DEPLOYMENT_STAGES` WAIT stages), for the state reads of long streams.

Each event is encoded by the event registry, as `EventStore.append` encodes
it, and the rows go in with COPY in batches (one transaction each): the
store's per-stream version checks would make a million appends take minutes
and measure nothing this benchmark asks about. Stream versions are counted
here, so every stream is gap-free from 0 as an append would leave it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
import msgspec

from shared.events import vocabulary
from shared.events.base import Event, Metadata
from shared.events.catalog import (
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentStarted,
    DeploymentTriggered,
    PlannedStage,
    StageCompleted,
    StageStarted,
    SyncRequested,
)
from shared.events.codec import EventRegistry

COPY_BATCH: Final = 20_000  # rows per COPY (and transaction)
LONG_APP_SYNCS: Final = 5_000
LONG_DEPLOYMENT_STAGES: Final = 2_500
LONG_DEPLOYMENT_ID: Final = "longpipeline"  # ids are lowercase alphanumerics
FAILING_EVERY: Final = 20

_COLUMNS: Final = ("stream_id", "stream_version", "event_id", "event_type", "schema_version",
                   "payload", "metadata")  # fmt: skip
_SYNC: Final = (PlannedStage(id="stage-0", name=vocabulary.StageName.K8S_SYNC, index=0),)
_PIPELINE: Final = tuple(
    PlannedStage(id=f"stage-{i}", name=vocabulary.StageName(name), index=i)
    for i, name in enumerate(
        ("K8S_CANARY_ROLLOUT", "ANALYSIS", "K8S_PRIMARY_ROLLOUT", "K8S_CANARY_CLEAN")
    )
)


_NEW_DEPLOYMENTS: Final = "deployment-h"
_HEAD: Final = "SELECT coalesce(max(stream_version), -1) FROM events WHERE stream_id = $1"


@dataclass(frozen=True)
class Written:
    events: int
    deployments: int
    seconds: float
    long_application_stream: str
    long_deployment_stream: str


def deployment_events(
    deployment_id: str, application_id: str, stages: Sequence[PlannedStage], at: datetime, n: int
) -> list[Event]:
    commit = f"{n:040x}"
    failed = n % FAILING_EVERY == 0
    events: list[Event] = [
        DeploymentTriggered(
            deployment_id=deployment_id,
            application_id=application_id,
            trigger=vocabulary.Trigger.ON_COMMIT,
            commit_hash=commit,
            commit_author="Bench CI",
            commit_message=f"bump images ({n})",
        ),
        DeploymentPlanned(
            deployment_id=deployment_id,
            application_id=application_id,
            commit_hash=commit,
            strategy=vocabulary.Strategy("quick_sync" if stages is _SYNC else "pipeline"),
            summary=f"image web: v{n} → v{n + 1}",
            reason="the image changed",
            stages=tuple(stages),
            config_filename="app.pipecd.yaml",
            version=f"v{n + 1}",  # as the planner's determine_version names the new image
        ),
        DeploymentStarted(
            deployment_id=deployment_id, application_id=application_id, started_at=at
        ),
    ]
    for i, stage in enumerate(stages):
        last = i == len(stages) - 1
        status = "FAILURE" if failed and last else "SUCCESS"
        events += [
            StageStarted(
                deployment_id=deployment_id, stage_id=stage.id, started_at=at, name=stage.name
            ),
            StageCompleted(
                deployment_id=deployment_id,
                stage_id=stage.id,
                status=vocabulary.StageStatus(status),
                completed_at=at,
            ),
        ]
    events.append(
        DeploymentCompleted(
            deployment_id=deployment_id,
            application_id=application_id,
            status=vocabulary.DeploymentStatus("FAILURE" if failed else "SUCCESS"),
            commit_hash=commit,
        )
    )
    return events


def _streams(
    application_ids: Sequence[str], events_wanted: int
) -> Iterator[tuple[str, list[Event]]]:
    """(stream id, its new events) until about `events_wanted` events were made."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    long_app = application_ids[0]
    syncs: list[Event] = [
        SyncRequested(application_id=long_app, request_id=f"sync-{i}", commander="bench")
        for i in range(LONG_APP_SYNCS)
    ]
    yield f"application-{long_app}", syncs
    long_stages = tuple(
        PlannedStage(id=f"wait-{i}", name=vocabulary.StageName.WAIT, index=i)
        for i in range(LONG_DEPLOYMENT_STAGES)
    )
    long = deployment_events(LONG_DEPLOYMENT_ID, application_ids[-1], long_stages, start, 1)
    made = len(syncs) + len(long)
    yield f"deployment-{LONG_DEPLOYMENT_ID}", long
    n = 0
    while made < events_wanted:
        application_id = application_ids[n % len(application_ids)]
        stages = _SYNC if application_id.endswith("-dev") else _PIPELINE
        at = start + timedelta(seconds=n)
        deployment_id = f"h{n:07d}"
        events = deployment_events(deployment_id, application_id, stages, at, n)
        made += len(events)
        n += 1
        yield f"deployment-{deployment_id}", events


async def write_history(
    conn: asyncpg.Connection,
    registry: EventRegistry,
    application_ids: Sequence[str],
    events_wanted: int,
) -> Written:
    """Append about `events_wanted` events (never fewer) with COPY; what was written."""
    started = datetime.now(UTC)
    metadata = msgspec.json.encode(Metadata(actor="bench-history")).decode()
    rows: list[tuple[object, ...]] = []
    total = deployments = 0
    for stream_id, events in _streams(application_ids, events_wanted):
        deployments += stream_id.startswith("deployment-")
        # The new deployments' streams are new; the long ones may exist (the registration).
        new = stream_id.startswith(_NEW_DEPLOYMENTS)
        head: int = -1 if new else await conn.fetchval(_HEAD, stream_id)
        for version, event in enumerate(events, start=head + 1):
            event_type, schema_version, payload = registry.encode(event)
            rows.append(
                (stream_id, version, uuid.uuid4(), event_type, schema_version, payload, metadata)
            )
        if len(rows) >= COPY_BATCH:
            total += await _copy(conn, rows)
            rows = []
    total += await _copy(conn, rows)
    # The log as autovacuum leaves it some minutes after a bulk insert (PostgreSQL vacuums
    # a table for its inserts too): the planner's and the API's queries are planned on
    # fresh statistics, and the rows' commit hint bits are set. Without the VACUUM the
    # first reader of a million fresh rows sets them, dirtying every page of the table,
    # and pays the writes: the first projection replayed after the history took 48 s of
    # mostly I/O waits for 9 s of CPU, the others 8-13 s.
    await conn.execute("VACUUM (ANALYZE) events")
    return Written(
        events=total,
        deployments=deployments,
        seconds=(datetime.now(UTC) - started).total_seconds(),
        long_application_stream=f"application-{application_ids[0]}",
        long_deployment_stream=f"deployment-{LONG_DEPLOYMENT_ID}",
    )


async def _copy(conn: asyncpg.Connection, rows: list[tuple[object, ...]]) -> int:
    if rows:
        await conn.copy_records_to_table("events", records=rows, columns=_COLUMNS)
    return len(rows)
