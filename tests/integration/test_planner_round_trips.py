"""How many statements the planner sends PostgreSQL to plan one trigger.

At 10,000 applications a plan's cost is mostly round trips (issue 16): each
statement counted here is one, paid ten thousand times per commit wave. The
figures are today's; a change that adds one must say why here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.planner.service import CONSUMER_NAME, Planner, RepositoryRef
from shared import tracing
from shared.consumer.handling import handle_once
from shared.db import create_pool
from shared.eventlog import EventStore
from shared.events.catalog import DeploymentPlanned
from shared.git import GitCache
from tests.support import Backends
from tests.support.git_helpers import WorkRepo
from tests.support.planner import Harness
from tests.support.seed_repo import image_bump, seed_files
from tests.support.statements import StatementLog

# A trigger at the head of its queue: its queue place (a commit of its own); the
# application's state, from its snapshot and the events after it (two reads, outside
# the transaction: `shared.snapshots`); and one transaction: BEGIN, the log's row
# with the inbox's word, the application's lock, its queue with the running commit,
# the deployment's stream (the decider's fold), the append in its savepoint
# (three), the queue row, the inbox, COMMIT.
STATEMENTS_PER_PLAN = 14


@dataclass(frozen=True)
class _Delivery:
    subject: str = "test.events"
    headers: dict[str, str] | None = None


async def test_planning_one_trigger_takes_few_statements(
    backends: Backends, tmp_path: Path, work: WorkRepo
) -> None:
    first = work.commit(seed_files("account"), "initial")
    second = work.commit(image_bump("account", "prd", "v2"), "account v2")
    counted = StatementLog()
    pool = await create_pool(backends.app_database_url, schema=backends.schema, setup=counted.setup)
    try:
        store = EventStore(pool, backends.store.registry)
        planner = Planner(
            store=store,
            git=GitCache(tmp_path / "cache"),
            repositories={"config": RepositoryRef(remote=work.url, branch="main")},
        )

        async def handle(deployment_id: str) -> None:
            """Handle the deployment's last event as the planner's consumer does."""
            *_, event = await backends.store.read_stream(f"deployment-{deployment_id}")
            handled, forged = await handle_once(
                [(_Delivery(), event)],
                consumer=CONSUMER_NAME,
                store=store,
                handler=planner.handle,
                tracer=tracing.tracer("test"),
            )
            assert (list(handled), forged) == ([event.event_id], {})

        # The harness only writes the registration, triggers and completions (on its pool).
        harness = Harness(backends, GitCache(tmp_path / "unused"), work.url)
        await harness.register("prd")
        # The first plan and its completion warm the pool's connections (type lookups).
        await harness.trigger("d1", first)
        await handle("d1")
        await harness.complete("d1", first)
        await handle("d1")
        await harness.trigger("d2", second)
        counted.queries.clear()
        await handle("d2")
        statements = list(counted.queries)
        *_, planned = await store.read_stream("deployment-d2")
        assert isinstance(planned.event, DeploymentPlanned)
        assert planned.event.running_commit_hash == first
    finally:
        await pool.close()
    assert len(statements) <= STATEMENTS_PER_PLAN, "\n".join(statements)
