"""Generation tables and the views in front of them: the DDL side of projections.

A logical table `t` of a projection is stored in `t_g<N>` (one physical table
per generation) and read through the view `t`. Building a generation never
touches the view; repointing the views of a projection happens in the
caller's transaction, so readers switch from one complete generation to the
next at commit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import asyncpg

from shared.projections.base import Projection


def physical_tables(logical: Iterable[str], generation: int) -> dict[str, str]:
    """`{logical: physical}` for `generation`: the names `Projection.apply` writes to."""
    return {name: f"{name}_g{generation}" for name in logical}


def quote(identifier: str) -> str:
    """A PostgreSQL identifier, quoted."""
    return '"' + identifier.replace('"', '""') + '"'


# A plain (not UNIQUE) index of a projection's DDL: it constrains nothing, so a
# generation can be filled without it and indexed once full.
_PLAIN_INDEX = re.compile(r"^\s*CREATE\s+INDEX\b", re.IGNORECASE)


async def create_generation(
    conn: asyncpg.Connection,
    projection: Projection,
    generation: int,
    *,
    defer_indexes: bool = False,
) -> tuple[dict[str, str], list[str]]:
    """Create the empty tables of `generation`: (their physical names, the statements of
    the plain indexes left to build, if `defer_indexes`).

    A replay defers them: a table filled first and indexed once costs a fraction
    of maintaining every index on each of its many updates. A projection's DDL is
    statements separated by `;`. A table of that name left behind by a build that
    crashed is dropped first: a generation is only ever built by the one replay
    holding the projection's replay lock, so whatever is there is garbage.
    """
    physical = physical_tables(projection.tables, generation)
    deferred: list[str] = []
    for logical, ddl in projection.tables.items():
        table = quote(physical[logical])
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in ddl.replace("{table}", table).split(";"):
            if not statement.strip():
                continue
            if defer_indexes and _PLAIN_INDEX.match(statement):
                deferred.append(statement)
            else:
                await conn.execute(statement)
    return physical, deferred


async def drop_generation(
    conn: asyncpg.Connection, logical: Iterable[str], generation: int
) -> None:
    """Drop one generation's physical tables."""
    for table in physical_tables(logical, generation).values():
        await conn.execute(f"DROP TABLE IF EXISTS {quote(table)}")


async def point_views(
    conn: asyncpg.Connection,
    *,
    drop: Iterable[str],
    create: Mapping[str, str],
) -> None:
    """Drop the views named in `drop`, then create a view `logical` over each `create[logical]`.

    DROP + CREATE rather than CREATE OR REPLACE VIEW because a new projection
    version may change the columns, which REPLACE refuses. In one transaction
    the pair is atomic: a reader blocked on the old view's lock resolves the
    name again after the commit and reads the new view.
    """
    for view in sorted({*drop, *create}):
        await conn.execute(f"DROP VIEW IF EXISTS {quote(view)}")
    for view, table in create.items():
        await conn.execute(f"CREATE VIEW {quote(view)} AS SELECT * FROM {quote(table)}")


async def foreign_owner(conn: asyncpg.Connection, tables: Iterable[str]) -> str | None:
    """The first role other than the session's that owns one of `tables`, if any.

    Tables a session creates belong to its role; one generation built by another
    role (an owner's or a superuser's URL) would lock the services out of it.
    """
    for table in tables:
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(relowner) FROM pg_class "
            "WHERE oid = to_regclass($1) AND pg_get_userbyid(relowner) <> current_user",
            quote(table),
        )
        if owner is not None:
            return str(owner)
    return None
