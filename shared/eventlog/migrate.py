"""Schema migrations: numbered SQL files applied once each, in order, under a lock.

Replicas starting together all call `migrate`; the advisory lock lets one of
them do the work while the others wait and then find nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from shared.db import LONG_CALL_S, check_schema_name
from shared.eventlog.roles import (
    DEFAULT_API_ROLE,
    DEFAULT_APP_ROLE,
    DEFAULT_PROJECTOR_ROLE,
    DEFAULT_READER_ROLE,
)

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Migration:
    """One numbered schema migration and its SQL."""

    version: int
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    """The migrations shipped in `shared/eventlog/migrations`, by version."""
    found = []
    for entry in resources.files("shared.eventlog").joinpath("migrations").iterdir():
        match = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def _lock_key(schema: str) -> int:
    digest = hashlib.blake2b(f"slipway-migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def migrate(
    conn: asyncpg.Connection,
    *,
    schema: str = "slipway",
    app_role: str = DEFAULT_APP_ROLE,
    projector_role: str = DEFAULT_PROJECTOR_ROLE,
    reader_role: str = DEFAULT_READER_ROLE,
    api_role: str = DEFAULT_API_ROLE,
    migrations: list[Migration] | None = None,
) -> list[int]:
    """Bring `schema` up to date; returns the versions applied now."""
    check_schema_name(schema)
    roles = {
        "{{app_role}}": app_role,
        "{{projector_role}}": projector_role,
        "{{reader_role}}": reader_role,
        "{{api_role}}": api_role,
    }
    for role in roles.values():
        if not _ROLE_NAME.match(role):
            raise ValueError(f"role name {role!r} must be lowercase letters, digits and _")
    if len(set(roles.values())) < len(roles):
        raise ValueError(f"each role needs a name of its own, not {sorted(roles.values())}")
    applied_now: list[int] = []
    # A migration may rewrite or index the whole log, and replicas wait here for
    # each other's: no statement limit on this (dedicated) session, nor on the client's
    # side for those two.
    await conn.execute("SET statement_timeout = 0")
    await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(schema), timeout=LONG_CALL_S)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations if migrations is not None else bundled_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                sql = migration.sql
                for placeholder, role in roles.items():
                    sql = sql.replace(placeholder, role)
                await conn.execute(sql, timeout=LONG_CALL_S)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(schema))
    return applied_now
