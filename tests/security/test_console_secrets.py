"""The console's secrets are the API's alone (migration 0015).

The keys that sign session cookies and the OIDC refresh tokens must not be readable with
another service's credentials (the services' role) nor an auditor's (the reader's): the
refusal comes from PostgreSQL itself. And what each role can read is listed whole, so a
later table granted to them by a migration or by 0008's default privileges shows up here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.eventlog import DEFAULT_APP_ROLE, DEFAULT_READER_ROLE
from shared.eventlog.roles import DEFAULT_API_ROLE

SECRET_TABLES = ("api_console_session_keys", "api_console_oidc_sessions")

READER_SEES = {"events", "stage_logs", "projection_state", "stream_snapshots"}
"""The record (0008) and states folded from it (0012), nothing else: a table added here is one
an auditor may read."""


async def _connect(url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    yield conn
    await conn.close()


@pytest.fixture
async def app_conn(app_database_url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    async for conn in _connect(app_database_url, schema):
        yield conn


@pytest.fixture
async def reader_conn(reader_database_url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    async for conn in _connect(reader_database_url, schema):
        yield conn


@pytest.fixture
async def api_conn(api_database_url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    async for conn in _connect(api_database_url, schema):
        yield conn


_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


async def _rights_of(conn: asyncpg.Connection, role: str) -> set[tuple[str, str]]:
    """(relation, privilege) for every table or view of the schema and every privilege `role`
    holds on it, or on any of its columns."""
    rows = await conn.fetch(
        "SELECT c.relname, p.privilege FROM pg_class c, unnest($2::text[]) AS p(privilege)"
        " WHERE c.relnamespace = current_schema()::regnamespace"
        "   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        "   AND (has_table_privilege($1, c.oid, p.privilege)"
        "        OR (p.privilege IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')"
        "            AND has_any_column_privilege($1, c.oid, p.privilege)))",
        role,
        list(_PRIVILEGES),
    )
    return {(r["relname"], r["privilege"]) for r in rows}


async def test_the_services_role_cannot_read_the_console_secrets(
    app_conn: asyncpg.Connection,
) -> None:
    """An executor's, a notifier's or a gitwatcher's credentials forge no console session."""
    for table in SECRET_TABLES:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.fetch(f"SELECT * FROM {table}")


async def test_code_tested_on_the_general_pool_is_refused_the_console_secrets(
    pool: asyncpg.Pool,
) -> None:
    """The `pool` fixture most tests use is a service's (the API's tests take `api_pool`): a
    service's code that read the console's tables would fail its own tests, not pass them."""
    assert await pool.fetchval("SELECT current_user") == DEFAULT_APP_ROLE
    for table in SECRET_TABLES:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.fetch(f"SELECT * FROM {table}")


async def test_the_reader_role_cannot_read_the_console_secrets(
    reader_conn: asyncpg.Connection,
) -> None:
    for table in SECRET_TABLES:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader_conn.fetch(f"SELECT * FROM {table}")


async def test_the_reader_reads_the_record_and_nothing_else(
    reader_conn: asyncpg.Connection,
) -> None:
    """A new table an auditor can read (a grant, or one the projector creates: 0008's default
    privileges give those to the reader) fails this until it is added to `READER_SEES`."""
    assert await _rights_of(reader_conn, DEFAULT_READER_ROLE) == {
        (table, "SELECT") for table in READER_SEES
    }


async def test_of_every_right_only_those_on_the_console_secrets_are_the_apis_alone(
    api_conn: asyncpg.Connection,
) -> None:
    """The API may do all the services' role does (it is a member) and, besides, only what the
    console does with its two tables: a grant to either role beyond that fails here."""
    app_rights = await _rights_of(api_conn, DEFAULT_APP_ROLE)
    api_rights = await _rights_of(api_conn, DEFAULT_API_ROLE)
    assert not app_rights - api_rights
    assert api_rights - app_rights == {
        ("api_console_session_keys", "SELECT"),
        ("api_console_session_keys", "INSERT"),
        ("api_console_session_keys", "DELETE"),
        ("api_console_oidc_sessions", "SELECT"),
        ("api_console_oidc_sessions", "INSERT"),
        ("api_console_oidc_sessions", "UPDATE"),
        ("api_console_oidc_sessions", "DELETE"),
    }


async def test_the_api_role_keeps_the_console_working(api_conn: asyncpg.Connection) -> None:
    """What the console does with its tables (session_keys.py, oidc_sessions.py) as the API."""
    await api_conn.execute(
        "INSERT INTO api_console_session_keys (kid, secret, created_at) VALUES (1, $1, now())",
        b"k" * 32,
    )
    assert await api_conn.fetchval("SELECT count(*) FROM api_console_session_keys") == 1
    await api_conn.execute("DELETE FROM api_console_session_keys WHERE kid = 1")
    await api_conn.execute(
        "INSERT INTO api_console_oidc_sessions"
        " (session_id, person, subject, role, refresh_token, checked_at, expires_at)"
        " VALUES ('s', 'alice', 'sub', 'admin', 'rt', now(), now())"
    )
    await api_conn.execute("UPDATE api_console_oidc_sessions SET role = 'read-only'")
    assert await api_conn.fetchval("SELECT role FROM api_console_oidc_sessions") == "read-only"
    await api_conn.execute("DELETE FROM api_console_oidc_sessions")
