"""Snapshots of long streams against a real PostgreSQL (`shared/snapshots.py`): a long
stream's state is read as its newest snapshot and fewer than `every` events after it, now
and as of earlier points, and always equals the fold from its first event; stale and
corrupt snapshots are not believed, and `slipway replay` drops and rebuilds them."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime

import aiohttp
import asyncpg
import msgspec
import pytest

from services.api.routes import API_PREFIX
from shared import deployments
from shared.db import create_pool
from shared.deployments import Deployment, Stage, fold_history
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
from shared.snapshots import (
    SNAPSHOT_EVERY,
    StateRead,
    pack,
    read_state,
    read_states,
    rebuild,
    unpack,
)
from shared.stream_folds import APPLICATION, BY_CATEGORY, DEPLOYMENT, StreamFold
from tests.support.api import api_key_for, auth_headers, served_api

D = "longone"
STREAM = f"deployment-{D}"
STAGES = 170  # 3 + 2 × 170 = 343 events: snapshots at versions 99, 199 and 299
EVERY = SNAPSHOT_EVERY


class CountingStore(EventStore):
    """The real store, counting the events its reads return."""

    rows = 0

    async def read_stream(self, stream_id: str, **kwargs: object) -> list[RecordedEvent]:
        page = await super().read_stream(stream_id, **kwargs)  # type: ignore[arg-type]
        self.rows += len(page)
        return page


def _events() -> list[Event]:
    stages = tuple(
        PlannedStage(id=f"w{i}", name=vocabulary.StageName.WAIT, index=i) for i in range(STAGES)
    )
    at = datetime(2026, 1, 1).astimezone()
    events: list[Event] = [
        DeploymentTriggered(
            deployment_id=D,
            application_id="app1",
            trigger=vocabulary.Trigger.ON_COMMIT,
            commit_hash="c0ffee",
        ),
        DeploymentPlanned(
            deployment_id=D,
            application_id="app1",
            commit_hash="c0ffee",
            strategy=vocabulary.Strategy.PIPELINE,
            summary="a long pipeline",
            reason="the image changed",
            stages=stages,
        ),
        DeploymentStarted(deployment_id=D, application_id="app1", started_at=at),
    ]
    for stage in stages:
        events += [
            StageStarted(deployment_id=D, stage_id=stage.id, started_at=at),
            StageCompleted(
                deployment_id=D,
                stage_id=stage.id,
                status=vocabulary.StageStatus.SUCCESS,
                completed_at=at,
            ),
        ]
    return events


@pytest.fixture
async def long_stream(store: EventStore) -> list[RecordedEvent]:
    events = _events()
    for start in range(0, len(events), 40):  # several transactions: distinct times
        await store.append(STREAM, new_events(events[start : start + 40]), expected_version=None)
    return await store.read_stream(STREAM)


def counting(store: EventStore) -> CountingStore:
    return CountingStore(store.pool, store.registry)


def encoded(state: object) -> bytes:
    return msgspec.json.encode(state)


async def snapshot_versions(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch(
        "SELECT stream_version FROM stream_snapshots WHERE stream_id = $1 ORDER BY 1", STREAM
    )
    return [r["stream_version"] for r in rows]


async def test_a_long_stream_is_read_from_its_snapshot_and_a_short_tail(
    store: EventStore, long_stream: list[RecordedEvent]
) -> None:
    """The first read folds all 343 events and keeps the state at version 299; the next
    reads fold only the 43 after it, and every read equals the fold from the start."""
    expected = encoded(fold_history(D, long_stream))
    first = counting(store)
    read = await read_state(first, STREAM, DEPLOYMENT)
    assert encoded(read.state) == expected
    assert (first.rows, read.events, read.version) == (343, 343, 342)
    assert await snapshot_versions(store.pool) == [299]
    again = counting(store)
    read = await read_state(again, STREAM, DEPLOYMENT)
    assert encoded(read.state) == expected
    assert again.rows == 43 < EVERY
    assert (read.snapshot_version, read.events, read.version) == (299, 343, 342)


async def test_as_of_reads_start_from_the_newest_snapshot_at_or_before_their_point(
    store: EventStore, long_stream: list[RecordedEvent]
) -> None:
    """By position and by time, at several points: each equals the fold of the events up to
    it; once the snapshots at 99, 199 and 299 exist, none folds `every` events or more."""
    points = [0, 98, 99, 150, 250, 299, 342]
    for _ in range(2):
        for version in points:
            expected = encoded(fold_history(D, long_stream[: version + 1]))
            position = long_stream[version].global_position
            by_position = await read_state(store, STREAM, DEPLOYMENT, up_to_position=position)
            assert encoded(by_position.state) == expected, version
            assert by_position.version == version
    assert await snapshot_versions(store.pool) == [99, 199, 299]
    for version in points:
        reader = counting(store)
        position = long_stream[version].global_position
        read = await read_state(reader, STREAM, DEPLOYMENT, up_to_position=position)
        assert reader.rows < EVERY and read.snapshot_version == (version + 1) // EVERY * EVERY - 1
    # Time: the last event recorded at or before `at` bounds what is folded, snapshots too.
    for version in (39, 159, 319):  # the last event of an append: no later one shares its time
        at = long_stream[version].recorded_at
        read = await read_state(counting(store), STREAM, DEPLOYMENT, up_to_time=at)
        assert encoded(read.state) == encoded(fold_history(D, long_stream[: version + 1]))
        assert read.snapshot_version == (version + 1) // EVERY * EVERY - 1
    before = await read_state(store, STREAM, DEPLOYMENT, up_to_position=0)
    assert before.state is None and before.version == -1


async def test_a_snapshot_of_another_code_version_is_ignored_and_replaced(
    store: EventStore, long_stream: list[RecordedEvent]
) -> None:
    """A snapshot written by other code (another state shape or fold revision) is not read,
    even if it decodes: its state may mean something else now."""
    expected = encoded(fold_history(D, long_stream))
    await read_state(store, STREAM, DEPLOYMENT)
    lying = Deployment(deployment_id=D, status=vocabulary.DeploymentStatus.CANCELLED, version=299)
    await store.pool.execute(
        "UPDATE stream_snapshots SET code_version = '0-older', state = $2 WHERE stream_id = $1",
        STREAM,
        pack(DEPLOYMENT, lying),  # decodes: only its code version tells it apart
    )
    reader = counting(store)
    read = await read_state(reader, STREAM, DEPLOYMENT)
    assert encoded(read.state) == expected and reader.rows == 343
    row = await store.pool.fetchrow("SELECT code_version, state FROM stream_snapshots")
    assert row["code_version"] == DEPLOYMENT.code_version  # written again by this code
    assert encoded(unpack(DEPLOYMENT, row["state"])) == encoded(fold_history(D, long_stream[:300]))


async def test_a_corrupt_snapshot_is_ignored_and_written_again(
    store: EventStore, long_stream: list[RecordedEvent]
) -> None:
    expected = encoded(fold_history(D, long_stream))
    for version in (99, 199, 299):
        position = long_stream[version].global_position
        await read_state(store, STREAM, DEPLOYMENT, up_to_position=position)
    await store.pool.execute(
        "UPDATE stream_snapshots SET state = $2 WHERE stream_id = $1 AND stream_version = 299",
        STREAM,
        b'{"deployment_id": "longone", "stages": [{"stage_id": 7',
    )
    reader = counting(store)
    read = await read_state(reader, STREAM, DEPLOYMENT)
    assert encoded(read.state) == expected
    assert read.snapshot_version == 199 and reader.rows == 143  # the one before it, then on
    state = await store.pool.fetchval(
        "SELECT state FROM stream_snapshots WHERE stream_id = $1 AND stream_version = 299", STREAM
    )
    assert encoded(unpack(DEPLOYMENT, state)) == encoded(fold_history(D, long_stream[:300]))


async def test_replay_drops_every_snapshot_and_rebuilds_the_long_streams_newest(
    store: EventStore,
    projector_store: EventStore,
    long_stream: list[RecordedEvent],
    projector_database_url: str,
    schema: str,
) -> None:
    """`slipway replay` (as the projector's role) drops stale, corrupt and unknown snapshots
    and writes each long stream's newest one from the log alone."""
    for version in (99, 199):
        position = long_stream[version].global_position
        await read_state(store, STREAM, DEPLOYMENT, up_to_position=position)
    await store.pool.execute(
        "UPDATE stream_snapshots SET state = 'garbage' WHERE stream_version = 99"
    )
    await store.pool.execute(
        "UPDATE stream_snapshots SET code_version = '0-older' WHERE stream_version = 199"
    )
    await store.pool.execute(
        "INSERT INTO stream_snapshots (stream_id, kind, stream_version, code_version,"
        " global_position, recorded_at, state) VALUES ('x-1', 'gone', 5, 'v', 1, now(), 'x')"
    )
    short = await store.append(
        "application-short",
        new_events(_events()[:3]),  # not an application's events: folds to nothing, short
        expected_version=None,
    )
    assert short.stream_versions[-1] < EVERY
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slipway_cli",
        "replay",
        "--database-url",
        projector_database_url,
        "--schema",
        schema,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert "snapshots: 1 long streams" in out.decode()
    rows = await store.pool.fetch(
        "SELECT stream_id, kind, stream_version, code_version, state FROM stream_snapshots"
    )
    assert [(r["stream_id"], r["kind"], r["stream_version"]) for r in rows] == [
        (STREAM, "deployment", 299)
    ]
    assert rows[0]["code_version"] == DEPLOYMENT.code_version
    assert encoded(unpack(DEPLOYMENT, rows[0]["state"])) == encoded(
        fold_history(D, long_stream[:300])
    )
    assert await rebuild(projector_store, BY_CATEGORY.values()) == 1  # the function alone
    assert APPLICATION.kind in BY_CATEGORY


async def test_a_role_that_cannot_write_snapshots_still_reads(
    store: EventStore, long_stream: list[RecordedEvent], reader_database_url: str, schema: str
) -> None:
    """The read-only role may read snapshots but not write them: it still gets the state."""
    pool = await create_pool(reader_database_url, schema=schema, min_size=1, max_size=1)
    try:
        reader = EventStore(pool, store.registry)
        read = await read_state(reader, STREAM, DEPLOYMENT)
        assert encoded(read.state) == encoded(fold_history(D, long_stream))
        assert await snapshot_versions(store.pool) == []
    finally:
        await pool.close()


async def test_the_api_reads_and_commands_a_long_deployment_from_its_snapshot(
    store: EventStore,
    api_pool: asyncpg.Pool,
    long_stream: list[RecordedEvent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`GET /deployments/{id}`, its state as of a position and a cancel each read fewer
    than `every` events once the snapshot exists, and answer what the fold from the start
    says; the cancel folds the stream once, linearly, not rebuilding the stages per event."""
    rebuilt: list[int] = []
    with_stage = deployments._with_stage

    def counted(state: Deployment, stage: Stage) -> Deployment:
        rebuilt.append(len(state.stages))
        return with_stage(state, stage)

    monkeypatch.setattr(deployments, "_with_stage", counted)
    reader = counting(store)
    expected = msgspec.json.decode(encoded(fold_history(D, long_stream)))
    middle = long_stream[250]
    as_of = msgspec.json.decode(encoded(fold_history(D, long_stream[:251])))
    async with (
        served_api(reader, api_pool) as url,
        aiohttp.ClientSession(base_url=url, headers=auth_headers(api_key_for(url))) as http,
    ):
        async with http.get(f"{API_PREFIX}/deployments/{D}") as reply:
            assert reply.status == 200
            first = await reply.json()
        assert {k: first[k] for k in expected} == expected
        assert await snapshot_versions(store.pool) == [299]
        reader.rows = 0
        async with http.get(f"{API_PREFIX}/deployments/{D}") as reply:
            assert await reply.json() == first
        assert reader.rows < EVERY
        reader.rows = 0
        path = f"{API_PREFIX}/events/streams/{STREAM}/state"
        async with http.get(path, params={"position": middle.global_position}) as reply:
            state = await reply.json()
        assert state["state"] == as_of and (state["events"], state["version"]) == (251, 250)
        assert reader.rows > EVERY  # no snapshot at or before 250 yet: 0..250, keeping 199
        reader.rows = 0
        async with http.get(path, params={"position": middle.global_position}) as reply:
            assert (await reply.json())["state"] == as_of
        assert reader.rows < EVERY
        reader.rows = 0
        async with http.post(f"{API_PREFIX}/deployments/{D}/cancel") as reply:
            assert reply.status == 202, await reply.text()
        assert reader.rows < EVERY
    assert rebuilt == []


class CountingFold(StreamFold[Deployment]):
    """The deployment fold, counting the snapshots it decodes."""

    decoded = 0

    def decode(self, stored: bytes) -> Deployment:
        CountingFold.decoded += 1
        return super().decode(stored)


async def test_a_store_decodes_a_snapshot_once_for_repeated_reads(
    store: EventStore, long_stream: list[RecordedEvent]
) -> None:
    """What a snapshot holds follows from its stream, version and code version, and its state
    is immutable: a store's repeated reads reuse the decoded state (most of a long read)."""
    fold = CountingFold("deployment", Deployment, DEPLOYMENT.fold)
    assert fold.code_version == DEPLOYMENT.code_version
    await read_state(store, STREAM, fold)  # writes the snapshot at 299
    CountingFold.decoded = 0
    expected = encoded(fold_history(D, long_stream))
    reader = counting(store)
    for _ in range(3):
        assert encoded((await read_state(reader, STREAM, fold)).state) == expected
    assert CountingFold.decoded == 1 and reader.rows == 3 * 43  # the tail is read each time
    await read_state(counting(store), STREAM, fold)  # another store: a cache of its own
    assert CountingFold.decoded == 2


async def test_a_batch_read_of_several_streams_equals_each_streams_own_read(
    store: EventStore, long_stream: list[RecordedEvent]
) -> None:
    """`read_states`: a short stream, a missing one and the long one in one call. The long
    one's tail is `every` events or more at first, so it is read alone (which keeps its
    snapshot); then it comes from the snapshot and its 43 events after it with the others;
    a corrupt snapshot sends it to `read_state` alone again; each equals its own fold."""
    short = "deployment-short"
    await store.append(short, new_events(_events()[:3]), expected_version=None)
    short_events = await store.read_stream(short)
    streams = [STREAM, short, "deployment-none"]
    expected = {
        STREAM: encoded(fold_history(D, long_stream)),
        short: encoded(fold_history("short", short_events)),
        "deployment-none": encoded(None),
    }

    async def read_all(reader: EventStore = store) -> dict[str, StateRead[Deployment]]:
        read = await read_states(reader, streams, DEPLOYMENT)
        assert list(read) == streams
        assert {s: encoded(r.state) for s, r in read.items()} == expected
        assert [r.version for r in read.values()] == [342, 2, -1]
        return read

    first = await read_all()
    assert first[STREAM].snapshot_version == -1 and first[STREAM].read == 343
    assert await snapshot_versions(store.pool) == [299]
    second = await read_all()
    assert (second[STREAM].snapshot_version, second[STREAM].read) == (299, 43)
    await store.pool.execute(
        "UPDATE stream_snapshots SET state = $2 WHERE stream_id = $1", STREAM, b"not zlib"
    )
    third = await read_all(counting(store))  # a store that has not decoded it before
    assert third[STREAM].snapshot_version == -1  # the corrupt one skipped
    # An event after the snapshot: the batch read's tail has it.
    late = StageStarted(
        deployment_id=D, stage_id="late", started_at=datetime(2026, 1, 2).astimezone()
    )
    await store.append(STREAM, new_events([late]), expected_version=342)
    expected[STREAM] = encoded(fold_history(D, await store.read_stream(STREAM)))
    read = await read_states(store, streams, DEPLOYMENT)
    assert encoded(read[STREAM].state) == expected[STREAM] and read[STREAM].version == 343
