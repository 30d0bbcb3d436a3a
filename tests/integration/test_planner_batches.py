"""The planner's batches: plans made before the transaction (`Planner.prepare`), one
transaction for the batch, and what happens when a batch's assumptions or one of its
events go wrong — against the real NATS, PostgreSQL and git."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest
import structlog

from services.planner import queue as queues
from services.planner.decider import queued
from services.planner.service import CONSUMER_NAME, Planner, RepositoryRef, ordering_key
from shared import tracing
from shared.consumer.handling import handle_once, logged_unhandled
from shared.db import create_pool
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import RecordedEvent
from shared.events.catalog import (
    ApplicationAdopted,
    ApplicationDisabled,
    ApplicationRegistered,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentTriggered,
)
from shared.git import GitCache
from shared.testing import wait_until
from tests.support import Backends, running
from tests.support.git_helpers import WorkRepo
from tests.support.planner import Harness, wait_for_event
from tests.support.seed_repo import image_bump, seed_files
from tests.support.statements import StatementLog


async def _register(
    store: EventStore, app_id: str, path: str, *, repository_id: str = "config"
) -> None:
    registered = ApplicationRegistered(
        application_id=app_id,
        name=app_id,
        repository_id=repository_id,
        path=path,
        config_filename=".pipe.yaml",
    )
    await store.append(
        f"application-{app_id}", new_events([registered]), expected_version=NO_STREAM
    )


async def _trigger(
    store: EventStore, deployment_id: str, app_id: str, commit: str, repository_id: str = "config"
) -> None:
    triggered = DeploymentTriggered(
        deployment_id=deployment_id,
        application_id=app_id,
        trigger=vocabulary.Trigger("on_commit"),
        commit_hash=commit,
        commit_message="change",
        repository_id=repository_id,
        commit_branch="main",
    )
    await store.append(
        f"deployment-{deployment_id}", new_events([triggered]), expected_version=NO_STREAM
    )


async def _published(backends: Backends, count: int) -> None:
    """Wait until the relay has published `count` events, so one fetch can take them all."""
    js = backends.nc.jetstream()

    async def enough() -> bool:
        info = await js.stream_info(backends.subjects.events_stream)
        return info.state.messages >= count

    await wait_until(enough, 10.0, what=f"{count} events published")


def _recording_prepare(harness: Harness, after: object = None) -> list[list[str]]:
    """Wrap the consumer's prepare hook: note each batch's deployments, then run `after`."""
    batches: list[list[str]] = []
    prepare = harness.planner.prepare

    async def recorded(events: Sequence[RecordedEvent]) -> None:
        batches.append([getattr(e.event, "deployment_id", "") for e in events])
        await prepare(events)
        if callable(after):
            await after()

    harness.consumer.prepare = recorded
    return batches


@pytest.fixture
async def harness(backends: Backends, tmp_path: Path, work: WorkRepo) -> Harness:
    await backends.ensure_event_stream()
    return Harness(backends, GitCache(tmp_path / "cache"), work.url)


async def test_a_running_commit_moved_between_phases_is_planned_again_against_the_new_one(
    harness: Harness, backends: Backends, work: WorkRepo
) -> None:
    """`prepare` planned app-b against v1; before the transaction app-b's running commit
    became v2. Its plan is made again, alone, against v2; app-a's prepared plan stands."""
    v1 = work.commit(seed_files("account"), "initial")
    v2 = work.commit(image_bump("account", "prd", "v2"), "account v2")
    v3 = work.commit(image_bump("account", "prd", "v3"), "account v3")
    store = harness.store
    await _register(store, "app-a", "account/dev")
    await _register(store, "app-b", "account/prd")
    await queues.set_running(store.pool, "app-b", v1, "")
    await _trigger(store, "da", "app-a", v3)
    await _trigger(store, "db", "app-b", v3)
    moved: list[str] = []

    async def move() -> None:
        if not moved:  # as another replica's adoption or completion would, between phases
            moved.append(v2)
            await queues.set_running(store.pool, "app-b", v2, "")

    batches = _recording_prepare(harness, move)
    async with running(harness.relay.run):
        await _published(backends, 4)
    async with running(*harness.components()):
        plan_a = await wait_for_event(store, "da", DeploymentPlanned)
        plan_b = await wait_for_event(store, "db", DeploymentPlanned)
    assert batches[0] == ["da", "db"]
    assert isinstance(plan_a, DeploymentPlanned) and isinstance(plan_b, DeploymentPlanned)
    assert (plan_b.running_commit_hash, plan_b.summary) == (v2, "image account: v2 → v3")
    assert harness.consumer.stats.handled_alone == 1
    assert harness.consumer.stats.retried == 0
    for deployment_id in ("da", "db"):
        kinds = [e.event_type for e in await store.read_stream(f"deployment-{deployment_id}")]
        assert kinds == ["deployment_triggered", "deployment_planned"], kinds


async def test_an_application_disabled_between_phases_is_not_planned_from_its_prepared_plan(
    harness: Harness, backends: Backends, work: WorkRepo
) -> None:
    """`prepare` read app-b (one batch read) and planned it; before the transaction app-b
    was disabled. The plan made from the application as read before is not used: app-b's
    deployment fails as disabled (planned again, alone, from the application as it is
    now); app-a's prepared plan stands."""
    v1 = work.commit(seed_files("account"), "initial")
    store = harness.store
    await _register(store, "app-a", "account/dev")
    await _register(store, "app-b", "account/prd")
    await _trigger(store, "da", "app-a", v1)
    await _trigger(store, "db", "app-b", v1)
    disabled: list[bool] = []

    async def disable() -> None:
        if not disabled:  # as `slipway app disable` would, between the phases
            disabled.append(True)
            await store.append(
                "application-app-b",
                new_events([ApplicationDisabled(application_id="app-b")]),
                expected_version=0,
            )

    batches = _recording_prepare(harness, disable)
    async with running(harness.relay.run):
        await _published(backends, 4)
    async with running(*harness.components()):
        plan_a = await wait_for_event(store, "da", DeploymentPlanned)
        failed_b = await wait_for_event(store, "db", DeploymentPlanFailed)
    assert batches[0] == ["da", "db"]
    assert isinstance(plan_a, DeploymentPlanned)
    assert isinstance(failed_b, DeploymentPlanFailed)
    assert "application app-b is disabled" in failed_b.reason, failed_b.reason
    assert harness.consumer.stats.handled_alone == 1
    assert harness.consumer.stats.retried == 0


async def test_a_stream_moved_between_phases_is_appended_to_alone_as_read_and_the_rest_together(
    harness: Harness, backends: Backends, work: WorkRepo
) -> None:
    """The batch's plans are appended in one statement, each decided on the trigger in hand.
    Before the transaction, another writer recorded db's place in line (its stream moved
    past the trigger): that statement writes nothing; each plan is appended alone, db's
    decided on its stream as read (still pending: planned after the other's event), in the
    same transaction, with no retry."""
    v1 = work.commit(seed_files("account"), "initial")
    store = harness.store
    for app_id, env in (("app-a", "dev"), ("app-b", "prd"), ("app-c", "dev")):
        await _register(store, app_id, f"account/{env}")
    for deployment_id, app_id in (("da", "app-a"), ("db", "app-b"), ("dc", "app-c")):
        await _trigger(store, deployment_id, app_id, v1)
    moved: list[bool] = []

    async def move() -> None:
        if not moved:
            moved.append(True)
            [trigger] = await store.read_stream("deployment-db")
            assert isinstance(trigger.event, DeploymentTriggered)
            behind = queued(trigger.event, "someone-else")
            await store.append("deployment-db", new_events([behind]), expected_version=0)

    batches = _recording_prepare(harness, move)
    async with running(harness.relay.run):
        await _published(backends, 6)
    async with running(*harness.components()):
        for deployment_id in ("da", "db", "dc"):
            await wait_for_event(store, deployment_id, DeploymentPlanned)
    assert batches[0] == ["da", "db", "dc"]
    assert (harness.consumer.stats.handled_alone, harness.consumer.stats.retried) == (0, 0)
    kinds = {
        deployment_id: [
            e.event_type for e in await store.read_stream(f"deployment-{deployment_id}")
        ]
        for deployment_id in ("da", "db", "dc")
    }
    assert kinds == {
        "da": ["deployment_triggered", "deployment_planned"],
        "db": ["deployment_triggered", "deployment_queued", "deployment_planned"],
        "dc": ["deployment_triggered", "deployment_planned"],
    }


async def test_an_adoption_earlier_in_the_batch_is_what_its_application_is_planned_against(
    harness: Harness, backends: Backends, work: WorkRepo
) -> None:
    """One batch: app-a's trigger (its handler takes the batch's locks and reads its queues),
    app-b's adoption of v2, app-b's trigger. app-b is planned against v2, not against the
    queue read before the adoption, nor the plan `prepare` made before it."""
    v1 = work.commit(seed_files("account"), "initial")
    v2 = work.commit(image_bump("account", "prd", "v2"), "account v2")
    v3 = work.commit(image_bump("account", "prd", "v3"), "account v3")
    store = harness.store
    await _register(store, "app-a", "account/dev")
    await _register(store, "app-b", "account/prd")
    await _trigger(store, "da", "app-a", v1)
    adopted = ApplicationAdopted(application_id="app-b", running_commit_hash=v2)
    await store.append("application-app-b", new_events([adopted]), expected_version=None)
    await _trigger(store, "db", "app-b", v3)
    batches = _recording_prepare(harness)
    async with running(harness.relay.run):
        await _published(backends, 5)
    async with running(*harness.components()):
        await wait_for_event(store, "da", DeploymentPlanned)
        plan_b = await wait_for_event(store, "db", DeploymentPlanned)
    assert batches[0] == ["da", "", "db"]
    assert isinstance(plan_b, DeploymentPlanned)
    assert (plan_b.running_commit_hash, plan_b.summary) == (v2, "image account: v2 → v3")


async def test_git_unreachable_while_preparing_is_waited_out_without_asking_git_again(
    harness: Harness, backends: Backends, work: WorkRepo
) -> None:
    """One batch: app-a's repository answers, app-b's refuses while `prepare` plans. app-a
    is planned; app-b is retried with back-off from what `prepare` met, not planned again
    alone in the batch's transaction, until the deadline fails it with git's words."""
    v1 = work.commit(seed_files("account"), "initial")
    dead = RepositoryRef(remote="http://127.0.0.1:9/config.git")
    harness.planner.sources.repositories["dead"] = dead
    harness.planner.give_up_after_s = 1.0
    await _register(harness.store, "app-a", "account/dev")
    await _register(harness.store, "app-b", "account/prd", repository_id="dead")
    await _trigger(harness.store, "da", "app-a", v1)
    await _trigger(harness.store, "db", "app-b", "b" * 40, repository_id="dead")
    batches = _recording_prepare(harness)
    async with running(harness.relay.run):
        await _published(backends, 4)
    async with running(*harness.components()):
        await wait_for_event(harness.store, "da", DeploymentPlanned)
        failed = await wait_for_event(harness.store, "db", DeploymentPlanFailed)
    assert batches[0] == ["da", "db"]
    assert isinstance(failed, DeploymentPlanFailed)
    assert failed.reason.startswith("git is unavailable: unreachable:")
    stats = harness.consumer.stats
    assert stats.retried >= 1
    assert (stats.handled_alone, stats.dead_lettered) == (0, 0)


async def _decided_in(store: EventStore, deployment_ids: Sequence[str]) -> dict[str, str]:
    """The transaction that appended each deployment's decision (its event after the trigger)."""
    rows = await store.pool.fetch(
        "SELECT stream_id, tx_id::text AS tx FROM events "
        "WHERE stream_id = ANY($1::text[]) AND stream_version > 0",
        [f"deployment-{d}" for d in deployment_ids],
    )
    return {row["stream_id"].removeprefix("deployment-"): row["tx"] for row in rows}


async def _three_apps(harness: Harness, work: WorkRepo) -> None:
    """app-a and app-b registered, app-c not; a trigger each (da, db, dc) at the seed."""
    v1 = work.commit(seed_files("account"), "initial")
    await _register(harness.store, "app-a", "account/dev")
    await _register(harness.store, "app-b", "account/prd")
    for deployment_id, app_id in (("da", "app-a"), ("db", "app-b"), ("dc", "app-c")):
        await _trigger(harness.store, deployment_id, app_id, v1)


async def test_a_failed_plan_is_decided_in_the_batch_with_the_others(
    harness: Harness, backends: Backends, work: WorkRepo
) -> None:
    """One batch of three: app-c is not registered, so its plan fails (a decision, made by
    `prepare` like the plans); all three decisions commit in the batch's one transaction."""
    await _three_apps(harness, work)
    batches = _recording_prepare(harness)
    async with running(harness.relay.run):
        await _published(backends, 5)
    async with running(*harness.components()):
        failed = await wait_for_event(harness.store, "dc", DeploymentPlanFailed)
        await wait_for_event(harness.store, "da", DeploymentPlanned)
        await wait_for_event(harness.store, "db", DeploymentPlanned)
    assert batches[0] == ["da", "db", "dc"]
    assert isinstance(failed, DeploymentPlanFailed)
    assert failed.reason.startswith("application app-c is not registered")
    stats = harness.consumer.stats
    assert (stats.handled, stats.retried, stats.handled_alone) == (3, 0, 0)
    assert len(set((await _decided_in(harness.store, ["da", "db", "dc"])).values())) == 1


async def test_a_handler_raising_for_one_event_leaves_the_others_committed(
    harness: Harness, backends: Backends, work: WorkRepo
) -> None:
    """The handler raises once for db, in the middle of the batch: da and dc commit together,
    db alone is retried (and then planned), nothing is decided twice."""
    await _three_apps(harness, work)
    handle = harness.planner.handle
    raised: list[str] = []

    async def flaky(event: RecordedEvent, conn: asyncpg.Connection) -> None:
        if getattr(event.event, "deployment_id", "") == "db" and not raised:
            raised.append("db")
            raise RuntimeError("the handler broke for db")
        await handle(event, conn)

    harness.consumer.handler = flaky
    batches = _recording_prepare(harness)
    async with running(harness.relay.run):
        await _published(backends, 5)
    async with running(*harness.components()):
        await wait_for_event(harness.store, "dc", DeploymentPlanFailed)
        await wait_for_event(harness.store, "da", DeploymentPlanned)
        await wait_for_event(harness.store, "db", DeploymentPlanned)
    assert batches[0] == ["da", "db", "dc"]
    stats = harness.consumer.stats
    assert (stats.retried, stats.dead_lettered, stats.handled_alone) == (1, 0, 0)
    decided_in = await _decided_in(harness.store, ["da", "db", "dc"])
    assert decided_in["da"] != decided_in["db"]
    for deployment_id in ("da", "db", "dc"):
        stream = await harness.store.read_stream(f"deployment-{deployment_id}")
        assert len(stream) == 2, stream  # the trigger and its one decision


async def test_two_replicas_on_one_batch_plan_each_deployment_once(
    backends: Backends, tmp_path: Path, work: WorkRepo
) -> None:
    """A batch delivered to two replicas at once (a redelivery after an ack wait), in opposite
    orders: both prepare it, both handle it in one transaction each. The first handler of
    each takes the batch's locks in application order, so neither waits on the other while
    holding a lock the other wants (no deadlock), and each deployment has one plan."""
    v1 = work.commit(seed_files("account"), "initial")
    store = backends.store
    apps = [f"app-{n:02d}" for n in range(8)]
    for n, app_id in enumerate(apps):
        await _register(store, app_id, "account/dev" if n % 2 else "account/prd")
        await _trigger(store, f"d{n:02d}", app_id, v1)
    batch = sorted(
        [
            (_Delivery(), (await store.read_stream(f"deployment-d{n:02d}"))[0])
            for n in range(len(apps))
        ],
        key=lambda delivered: ordering_key(delivered[1]),
    )
    replicas = [
        Planner(
            store=store,
            git=GitCache(tmp_path / f"cache-{n}"),
            repositories={"config": RepositoryRef(remote=work.url, branch="main")},
        )
        for n in range(2)
    ]
    pairs = list(zip(replicas, [batch, batch[::-1]], strict=True))
    await asyncio.gather(*(r.prepare([e for _, e in b]) for r, b in pairs))

    async def handle(replica: Planner, batch: list[tuple[_Delivery, RecordedEvent]]) -> object:
        try:
            return await handle_once(
                batch,
                consumer=CONSUMER_NAME,
                store=store,
                handler=replica.handle,
                tracer=tracing.tracer("test"),
            )
        except asyncpg.UniqueViolationError as exc:
            return exc  # the slower one: its inbox rows collide; redelivery skips them

    outcomes = await asyncio.gather(*(handle(r, b) for r, b in pairs))
    # The slower one collides on the inbox, or — when the faster one committed before it
    # read the inbox (a busy machine) — finds the batch handled and skips it all.
    assert sorted(type(o).__name__ for o in outcomes) in (
        ["UniqueViolationError", "tuple"],
        ["tuple", "tuple"],
    )
    for n in range(len(apps)):
        kinds = [e.event_type for e in await store.read_stream(f"deployment-d{n:02d}")]
        assert kinds == ["deployment_triggered", "deployment_planned"], (n, kinds)


class _Delivery:
    subject = "test.events"
    headers: dict[str, str] | None = None


# Eight triggers in one batch, each at the head of its queue. Before the transaction: the
# log's rows with the inbox's word, the queue places, the queues and the applications'
# newest snapshots and the events after them (one each, for the whole batch): 5. Then one
# transaction: BEGIN, the log's rows with the inbox's word, the eight locks and queues (one
# each), the eight appends in one statement in a savepoint (three: each decided on the
# trigger in hand, no stream read), their queue rows (one), the inbox, COMMIT: 10. 15 in
# all, about 2 a plan (it was 65 when each plan read its application and its stream and
# appended alone), where one trigger alone takes 14 (`test_planner_round_trips.py`).
STATEMENTS_FOR_A_BATCH_OF_8 = 15
_INTROSPECTION = re.compile(r"typeinfo_tree|setting\('jit'\)|set_config\('jit'")


async def test_planning_a_batch_takes_fewer_statements_per_plan(
    backends: Backends, tmp_path: Path, work: WorkRepo
) -> None:
    v1 = work.commit(seed_files("account"), "initial")
    store = backends.store
    apps = [f"app-{n:02d}" for n in range(16)]
    for n, app_id in enumerate(apps):
        await _register(store, app_id, "account/dev")
        await _trigger(store, f"d{n:02d}", app_id, v1)
    counted = StatementLog()
    pool = await create_pool(backends.app_database_url, schema=backends.schema, setup=counted.setup)
    try:
        counted_store = EventStore(pool, store.registry)
        planner = Planner(
            store=counted_store,
            git=GitCache(tmp_path / "cache"),
            repositories={"config": RepositoryRef(remote=work.url, branch="main")},
        )

        async def plan(numbers: range) -> None:
            batch = [
                (_Delivery(), (await store.read_stream(f"deployment-d{n:02d}"))[0]) for n in numbers
            ]
            await planner.prepare(
                await logged_unhandled(batch, consumer=CONSUMER_NAME, store=counted_store)
            )
            handled, forged = await handle_once(
                batch,
                consumer=CONSUMER_NAME,
                store=counted_store,
                handler=planner.handle,
                tracer=tracing.tracer("test"),
            )
            assert (len(handled), forged) == (len(numbers), {})

        await plan(range(8))  # opens and warms the pool's connections (type lookups), git
        counted.queries.clear()
        await plan(range(8, 16))
        # Not asyncpg's type lookups, which a connection the pool opens now makes once.
        statements = [q for q in counted.queries if not _INTROSPECTION.search(q)]
    finally:
        await pool.close()
    for n in range(16):
        *_, planned = await store.read_stream(f"deployment-d{n:02d}")
        assert isinstance(planned.event, DeploymentPlanned)
    assert len(statements) <= STATEMENTS_FOR_A_BATCH_OF_8, "\n".join(statements)


async def test_a_batch_logs_one_summary_at_info_and_each_plan_only_at_debug(
    harness: Harness, backends: Backends, work: WorkRepo
) -> None:
    """At 10,000 applications a line per plan was a tenth of the planner's CPU: each batch
    says at info what `prepare` made of it (a config error counted as a failed plan), and
    each plan's own line is at debug."""
    v1 = work.commit(seed_files("account"), "initial")
    store = harness.store
    await _register(store, "app-a", "account/dev")
    await _register(store, "app-c", "nowhere")  # no config file there: the plan fails
    await _trigger(store, "da", "app-a", v1)
    await _trigger(store, "dc", "app-c", v1)
    batches = _recording_prepare(harness)
    async with running(harness.relay.run):
        await _published(backends, 4)
    with structlog.testing.capture_logs() as captured:
        async with running(*harness.components()):
            await wait_for_event(store, "da", DeploymentPlanned)
            await wait_for_event(store, "dc", DeploymentPlanFailed)
    assert batches[0] == ["da", "dc"]
    summaries = [e for e in captured if e["event"] == "batch_prepared"]
    assert summaries == [
        {
            "event": "batch_prepared",
            "log_level": "info",
            "triggers": 2,
            "planned": 1,
            "failed": 1,
            "unavailable": 0,
            "not_prepared": 0,
        }
    ]
    planned = [e for e in captured if e["event"] == "deployment_planned"]
    assert [e["log_level"] for e in planned] == ["debug"]


async def test_a_batch_with_a_delivery_twice_writes_every_decision(
    backends: Backends, tmp_path: Path, work: WorkRepo
) -> None:
    """The transaction's writes are made by its last handler. A batch whose last delivery
    repeats an earlier one (a redelivery fetched with it: handled once, at its first place)
    still has them all written, by the handler of the last event handled."""
    v1 = work.commit(seed_files("account"), "initial")
    store = backends.store
    for n in range(3):
        await _register(store, f"app-{n}", "account/dev")
        await _trigger(store, f"d{n}", f"app-{n}", v1)
    planner = Planner(
        store=store,
        git=GitCache(tmp_path / "cache"),
        repositories={"config": RepositoryRef(remote=work.url, branch="main")},
    )
    events = [(await store.read_stream(f"deployment-d{n}"))[0] for n in range(3)]
    batch = [(_Delivery(), event) for event in (*events, events[0])]
    await planner.prepare(await logged_unhandled(batch, consumer=CONSUMER_NAME, store=store))
    handled, forged = await handle_once(
        batch,
        consumer=CONSUMER_NAME,
        store=store,
        handler=planner.handle,
        tracer=tracing.tracer("test"),
    )
    assert (len(handled), forged) == (3, {})
    for n in range(3):
        kinds = [e.event_type for e in await store.read_stream(f"deployment-d{n}")]
        assert kinds == ["deployment_triggered", "deployment_planned"], (n, kinds)
    rows = await store.pool.fetch("SELECT state FROM planner_deployments ORDER BY deployment_id")
    assert [r["state"] for r in rows] == ["active"] * 3
