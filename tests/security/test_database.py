"""The database enforces the log's rules on whoever holds a service's credentials.

Each test logs in as the role a service uses (the services' or the projector's)
on a real, freshly migrated schema and tries what that role must never do; the
refusal comes from PostgreSQL itself, not from Slipway's code.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db import connect, create_pool
from shared.eventlog import (
    DEFAULT_API_ROLE,
    DEFAULT_APP_ROLE,
    DEFAULT_PROJECTOR_ROLE,
    DEFAULT_READER_ROLE,
    EventStore,
    migrate,
)
from shared.eventlog.migrate import Migration, bundled_migrations
from shared.events.catalog import default_registry
from shared.projections import ProjectionRunner, replay
from shared.projections.applications import ApplicationsProjection
from shared.projections.replay import _LOCK as _REPLAY_LOCK
from shared.projections.replay import _UNLOCK as _REPLAY_UNLOCK
from shared.projections.stream_stats import StreamStatsProjection
from shared.runtime import Component, ServiceRuntime
from shared.settings import ServiceSettings, load_settings
from shared.testing import wait_until

_EVENT_COLUMNS = "stream_id, stream_version, event_id, event_type, payload"
_EVENT_VALUES = "'app-x', 0, gen_random_uuid(), 'forged', '\\x00'::bytea"
_LEAST_PRIVILEGE = 8
"""The migration that took CREATE and the ordering columns from the services' role."""


@pytest.fixture(
    params=[DEFAULT_APP_ROLE, DEFAULT_PROJECTOR_ROLE, DEFAULT_READER_ROLE, DEFAULT_API_ROLE]
)
async def service_conn(
    request: pytest.FixtureRequest,
    app_database_url: str,
    api_database_url: str,
    projector_database_url: str,
    reader_database_url: str,
    schema: str,
) -> AsyncIterator[asyncpg.Connection]:
    """A connection as one of the roles Slipway's processes use, in the test's migrated schema."""
    url = {
        DEFAULT_APP_ROLE: app_database_url,
        DEFAULT_PROJECTOR_ROLE: projector_database_url,
        DEFAULT_READER_ROLE: reader_database_url,
        DEFAULT_API_ROLE: api_database_url,
    }[request.param]
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    yield conn
    await conn.close()


@pytest.fixture
async def app_conn(app_database_url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(app_database_url, server_settings={"search_path": schema})
    yield conn
    await conn.close()


@pytest.fixture
async def reader_conn(reader_database_url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(reader_database_url, server_settings={"search_path": schema})
    yield conn
    await conn.close()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("tx_id", "'1'::xid8"),
        ("recorded_at", "'2000-01-01T00:00:00Z'::timestamptz"),
        ("global_position", "1"),
    ],
)
async def test_a_writer_cannot_choose_where_or_when_an_event_lands(
    app_conn: asyncpg.Connection, column: str, value: str
) -> None:
    """An INSERT that names an ordering column (tx_id, recorded_at, global_position) is refused."""
    overriding = "OVERRIDING SYSTEM VALUE" if column == "global_position" else ""
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute(
            f"INSERT INTO events ({_EVENT_COLUMNS}, {column}) {overriding} "
            f"VALUES ({_EVENT_VALUES}, {value})"
        )
    assert await app_conn.fetchval("SELECT count(*) FROM events") == 0


async def test_a_writer_still_appends_with_the_database_choosing_the_order(
    app_conn: asyncpg.Connection,
) -> None:
    """The services' role appends; tx_id and recorded_at are the inserting transaction's."""
    row = await app_conn.fetchrow(
        f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({_EVENT_VALUES}) "
        "RETURNING tx_id = pg_current_xact_id() AS own_tx, recorded_at >= now() AS now"
    )
    assert row is not None and row["own_tx"] and row["now"]


@pytest.mark.parametrize(
    ("table", "columns", "values"),
    [
        ("stage_logs", "deployment_id, stage_id, severity, message", "'d', 's', 'info', 'm'"),
        ("dead_letters", "consumer, subject, deliveries, data, error", "'c', 's', 1, '', 'e'"),
    ],
)
async def test_append_only_records_get_their_time_from_the_database(
    app_conn: asyncpg.Connection, table: str, columns: str, values: str
) -> None:
    """Stage logs and dead letters refuse a writer-chosen recorded_at too."""
    await app_conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({values})")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute(
            f"INSERT INTO {table} ({columns}, recorded_at) VALUES ({values}, '2000-01-01Z')"
        )


async def test_a_dead_letter_keeps_what_was_recorded_only_its_redrive_state_changes(
    app_conn: asyncpg.Connection,
) -> None:
    """The services may mark a dead letter for redrive, never rewrite the message or its error."""
    letter = await app_conn.fetchval(
        "INSERT INTO dead_letters (consumer, subject, deliveries, data, error) "
        "VALUES ('c', 's', 1, '', 'e') RETURNING id"
    )
    await app_conn.execute(
        "UPDATE dead_letters SET redrive_requested_at = now(), redriven_at = now(), "
        "redrive_error = 'x' WHERE id = $1",
        letter,
    )
    for column, value in (("error", "'hidden'"), ("data", "''"), ("recorded_at", "now()")):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute(
                f"UPDATE dead_letters SET {column} = {value} WHERE id = $1", letter
            )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute("DELETE FROM dead_letters WHERE id = $1", letter)


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE planted (x int)",
        "CREATE VIEW planted AS SELECT 1 AS x",
        "CREATE FUNCTION planted() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TABLE public.planted (x int)",
    ],
)
async def test_the_services_role_creates_nothing(
    app_conn: asyncpg.Connection, statement: str
) -> None:
    """The services' role has no CREATE on Slipway's schema, nor on `public`."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE events",
        "TRUNCATE stage_logs",
        "DROP TABLE events",
        "DROP TABLE checkpoints",
        "ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "ALTER TABLE events ADD COLUMN planted int",
        "ALTER TABLE events OWNER TO CURRENT_USER",
        "DROP TRIGGER events_no_update_or_delete ON events",
        "DROP FUNCTION events_are_append_only() CASCADE",
        "UPDATE events SET payload = ''",
        "DELETE FROM events",
        "INSERT INTO schema_migrations (version, name) VALUES (9999, 'planted')",
        "SET session_replication_role = replica",
    ],
)
async def test_no_service_role_can_rewrite_or_unguard_the_log(
    service_conn: asyncpg.Connection, statement: str
) -> None:
    """TRUNCATE, DROP, ALTER, disabling triggers and rewriting rows are refused to every role."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await service_conn.execute(statement)


async def test_the_services_role_owns_nothing_after_projections_are_built(
    app_conn: asyncpg.Connection, projector_store: EventStore, schema: str
) -> None:
    """Projections are the projector's: the services' role reads them and owns no relation."""
    await ProjectionRunner(projector_store, ApplicationsProjection()).install()
    owned = await app_conn.fetchval(
        "SELECT count(*) FROM pg_class WHERE relnamespace = $1::regnamespace "
        "AND relowner = current_user::regrole",
        schema,
    )
    assert owned == 0
    assert await app_conn.fetchval("SELECT count(*) FROM applications") == 0
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute("DROP VIEW applications")


async def test_the_projector_role_reads_the_log_but_never_appends(
    projector_store: EventStore,
) -> None:
    """The one role that may CREATE has no INSERT on events."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await projector_store.pool.execute(
            f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({_EVENT_VALUES})"
        )
    assert await projector_store.pool.fetchval("SELECT count(*) FROM events") == 0


async def test_a_service_pool_has_both_session_limits_by_default(
    app_database_url: str, schema: str
) -> None:
    """create_pool sets statement_timeout (30 s) and idle_in_transaction_session_timeout (60 s)."""
    pool = await create_pool(app_database_url, schema=schema)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "30s"
            assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "1min"
    finally:
        await pool.close()


async def test_a_statement_longer_than_the_limit_is_cancelled(
    app_database_url: str, schema: str
) -> None:
    """PostgreSQL cancels a service's statement that outlives statement_timeout."""
    pool = await create_pool(app_database_url, schema=schema, statement_timeout_s=0.2)
    try:
        with pytest.raises(asyncpg.QueryCanceledError):
            await pool.execute("SELECT pg_sleep(5)")
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_a_transaction_left_idle_is_ended_by_the_server(
    app_database_url: str, schema: str
) -> None:
    """A session idle in a transaction past the limit is terminated, its locks released."""
    pool = await create_pool(app_database_url, schema=schema, idle_in_transaction_timeout_s=0.2)
    try:
        async with pool.acquire() as idle:
            pid = idle.get_server_pid()
            await idle.execute("BEGIN")
            await idle.execute("LOCK TABLE checkpoints IN ACCESS EXCLUSIVE MODE")

            def seen_closed() -> bool:
                try:
                    return bool(idle.is_closed())
                except asyncpg.InterfaceError:  # the pool took it back when it saw it close
                    return True

            async def ended() -> bool:
                sql = "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)"
                # And seen here: a connection released before its end reaches the client
                # is sent a ROLLBACK that races the server's goodbye (a flaky failure).
                return bool(await pool.fetchval(sql, pid)) and seen_closed()

            await wait_until(ended, within_s=10, what="the idle session's end")
        # The lock went with the session: another writer is not stuck behind it.
        await pool.execute(
            "INSERT INTO checkpoints (name, tx_id, position) VALUES ($1, '0', 0)",
            f"probe-{uuid.uuid4().hex[:8]}",
        )
    finally:
        await pool.close()


async def test_an_upgrade_hands_projections_the_services_role_built_to_the_projector(
    database_url: str,
    app_database_url: str,
    projector_database_url: str,
    test_id: str,
) -> None:
    """Migrating an installation whose services' role built projections leaves it owning none."""
    schema = f"{test_id}_up"
    admin = await asyncpg.connect(database_url)
    try:
        before = [m for m in bundled_migrations() if m.version < _LEAST_PRIVILEGE]
        await migrate(admin, schema=schema, migrations=before)
        old = await create_pool(app_database_url, schema=schema, max_size=2)
        try:
            # As before the upgrade: the services' role installs and owns the projection.
            await ProjectionRunner(
                EventStore(old, default_registry()), StreamStatsProjection()
            ).install()
        finally:
            await old.close()
        assert await migrate(admin, schema=schema) == [
            m.version for m in bundled_migrations() if m.version >= _LEAST_PRIVILEGE
        ]

        app = await asyncpg.connect(app_database_url, server_settings={"search_path": schema})
        try:
            owned = await app.fetchval(
                "SELECT count(*) FROM pg_class WHERE relnamespace = $1::regnamespace "
                "AND relowner = current_user::regrole",
                schema,
            )
            assert owned == 0
            assert await app.fetchval("SELECT count(*) FROM stream_stats") == 0
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("CREATE TABLE planted (x int)")
        finally:
            await app.close()
        # The projector takes over: it rebuilds (creates, swaps, drops) what was built before.
        projector = await create_pool(projector_database_url, schema=schema, max_size=2)
        try:
            result = await replay(
                EventStore(projector, default_registry()), StreamStatsProjection()
            )
            assert result.generation == 2
        finally:
            await projector.close()
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


async def test_a_services_settings_set_its_session_limits(
    app_database_url: str, schema: str, nats_url: str, test_id: str
) -> None:
    """SLIPWAY_DATABASE_*_TIMEOUT_S reach the pool a service's runtime opens."""
    env = {
        "SLIPWAY_DATABASE_URL": app_database_url,
        "SLIPWAY_DATABASE_SCHEMA": schema,
        "SLIPWAY_NATS_URL": nats_url,
        "SLIPWAY_SUBJECT_PREFIX": test_id,
        "SLIPWAY_DATABASE_STATEMENT_TIMEOUT_S": "5",
        "SLIPWAY_DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S": "7.5",
    }
    settings = load_settings(ServiceSettings, env)
    seen: list[tuple[str, str]] = []

    async def show(_stop: asyncio.Event) -> None:
        async with runtime.pool.acquire() as conn:
            seen.append(
                (
                    await conn.fetchval("SHOW statement_timeout"),
                    await conn.fetchval("SHOW idle_in_transaction_session_timeout"),
                )
            )

    async def setup(_: ServiceRuntime[ServiceSettings]) -> list[Component]:
        return [show]

    runtime = ServiceRuntime("limited", settings, burst=True, handle_signals=False)
    report = await runtime.run(setup)
    assert report.exit_code == 0
    assert seen == [("5s", "7500ms")]


@pytest.mark.parametrize(
    "statement",
    [
        f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({_EVENT_VALUES})",
        "INSERT INTO stage_logs (deployment_id, stage_id, severity, message) "
        "VALUES ('d', 's', 'info', 'm')",
        "UPDATE projection_state SET version = 99",
        "CREATE TABLE planted (x int)",
        "SELECT * FROM executor_leases",
        "SELECT * FROM notifier_outbox",
        "SELECT * FROM dead_letters",
        "SELECT * FROM consumer_inbox",
        "SELECT * FROM checkpoints",
    ],
)
async def test_the_reader_role_writes_nothing_and_sees_only_the_record(
    reader_conn: asyncpg.Connection, statement: str
) -> None:
    """The read-only role may not write, create, or read the services' working state."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await reader_conn.execute(statement)


async def test_the_reader_role_reads_the_log_stage_logs_and_projections(
    reader_conn: asyncpg.Connection, projector_store: EventStore
) -> None:
    """Query paths (`slipway analysis rejudge`, audits) get the record as the reader."""
    await ProjectionRunner(projector_store, ApplicationsProjection()).install()
    for table in ("events", "stage_logs", "applications", "projection_state"):
        assert await reader_conn.fetchval(f"SELECT count(*) >= 0 FROM {table}"), table


async def test_a_replay_waiting_for_another_outlasts_the_statement_limit(
    projector_database_url: str, schema: str
) -> None:
    """Waiting for another replica's rebuild is not cut short by statement_timeout."""
    projection = StreamStatsProjection()
    pool = await create_pool(projector_database_url, schema=schema, statement_timeout_s=0.2)
    holder = await asyncpg.connect(projector_database_url, server_settings={"search_path": schema})
    try:
        await holder.execute(_REPLAY_LOCK, projection.name)  # another replica is rebuilding
        waiting = asyncio.create_task(
            replay(EventStore(pool, default_registry()), projection, wait=True)
        )
        await asyncio.sleep(0.6)  # three statement limits: the wait must still be going
        assert not waiting.done()
        await holder.execute(_REPLAY_UNLOCK, projection.name)
        async with asyncio.timeout(10):
            result = await waiting
        assert result.generation == 2
    finally:
        await holder.close()
        await pool.close()


async def test_a_migration_outlasts_the_statement_limit(database_url: str, test_id: str) -> None:
    """Migrations may index or rewrite the whole log: their session has no statement limit."""
    schema = f"{test_id}_slow"
    conn = await connect(database_url, schema="public", statement_timeout_s=0.2)
    try:
        slow = Migration(1, "slow", "SELECT pg_sleep(0.6)")
        assert await migrate(conn, schema=schema, migrations=[slow]) == [1]
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
