"""The `projection_state` row: a projection's version, live generation and checkpoint.

The row is also the projection's lock. A runner takes it `FOR UPDATE` at the
start of every batch and writes the new checkpoint into it at the end, in
the same transaction as the rows the batch produced; a replay takes it to
swap generations. So two runner replicas never apply the same batch (the
second waits, then reads the checkpoint the first committed), and a swap
never interleaves with a batch. A row lock rather than an advisory lock:
it is scoped to the schema by construction, needs no key hashing, and is
the very row whose update it protects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg
import msgspec

from shared.eventlog.position import LogPosition
from shared.projections.base import Projection
from shared.projections.tables import create_generation, physical_tables, point_views

_COLUMNS = "name, version, generation, tables, tx_id, position, rebuilt_at"
_LOAD = f"SELECT {_COLUMNS} FROM projection_state WHERE name = $1"
_LOAD_FOR_UPDATE = _LOAD + " FOR UPDATE"
_CLAIM = """
INSERT INTO projection_state (name, version, generation, tables) VALUES ($1, $2, 1, $3)
ON CONFLICT (name) DO NOTHING
RETURNING name
"""
_SWAP = """
UPDATE projection_state
SET version = $2, generation = $3, tables = $4, tx_id = $5::xid8, position = $6,
    rebuilt_at = clock_timestamp(), updated_at = clock_timestamp()
WHERE name = $1
"""


class ProjectionState(msgspec.Struct, frozen=True, kw_only=True):
    """One `projection_state` row."""

    name: str
    version: int
    generation: int
    tables: tuple[str, ...]
    checkpoint: LogPosition
    rebuilt_at: datetime | None

    def physical_tables(self) -> dict[str, str]:
        """`{logical: physical}` of the live generation."""
        return physical_tables(self.tables, self.generation)


async def load_state(
    conn: asyncpg.Connection, name: str, *, for_update: bool = False
) -> ProjectionState | None:
    """The projection's row, or None before it is installed; `for_update` locks it."""
    row = await conn.fetchrow(_LOAD_FOR_UPDATE if for_update else _LOAD, name)
    if row is None:
        return None
    return _state_of(row)


# The rows of several projections that no other transaction holds (a replay holds its
# projection's row for the whole rebuild; another replica, for its batch), locked.
_LOCK_FREE = f"""
SELECT {_COLUMNS} FROM projection_state WHERE name = ANY($1::text[])
ORDER BY name FOR UPDATE SKIP LOCKED
"""
_SAVE_CHECKPOINTS = """
UPDATE projection_state AS p
SET tx_id = u.tx_id::xid8, position = u.position, updated_at = clock_timestamp()
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(name, tx_id, position)
WHERE p.name = u.name
"""


async def lock_free_states(conn: asyncpg.Connection, names: Sequence[str]) -> list[ProjectionState]:
    """The rows of `names` that no other transaction holds, locked (in the caller's
    transaction) in name order; the others are left out, not waited for."""
    return [_state_of(row) for row in await conn.fetch(_LOCK_FREE, list(names))]


async def save_checkpoints(
    conn: asyncpg.Connection, checkpoints: Mapping[str, LogPosition]
) -> None:
    """Record how far several projections have applied the log, in one statement (in the
    caller's transaction)."""
    names = list(checkpoints)
    await conn.execute(
        _SAVE_CHECKPOINTS,
        names,
        [str(checkpoints[name].tx_id) for name in names],
        [checkpoints[name].global_position for name in names],
    )


def _state_of(row: asyncpg.Record) -> ProjectionState:
    return ProjectionState(
        name=row["name"],
        version=row["version"],
        generation=row["generation"],
        tables=tuple(row["tables"]),
        checkpoint=LogPosition(row["tx_id"], row["position"]),
        rebuilt_at=row["rebuilt_at"],
    )


async def save_checkpoint(conn: asyncpg.Connection, name: str, position: LogPosition) -> None:
    """Record how far a projection has applied the log (in the caller's transaction)."""
    await save_checkpoints(conn, {name: position})


async def install(conn: asyncpg.Connection, projection: Projection) -> ProjectionState:
    """The projection's row, creating it with empty generation-1 tables and views on first use.

    Replicas starting together all call this: the first INSERT wins, the others
    wait on its uniqueness check and then find the row, so the tables are
    created exactly once, in the same transaction as the row.
    """
    async with conn.transaction():
        claimed = await conn.fetchval(
            _CLAIM, projection.name, projection.version, list(projection.tables)
        )
        if claimed is not None:
            created, _ = await create_generation(conn, projection, 1)
            await point_views(conn, drop=(), create=created)
        state = await load_state(conn, projection.name)
    assert state is not None, "the row was just claimed or found"
    return state


async def swap_generation(
    conn: asyncpg.Connection,
    projection: Projection,
    generation: int,
    checkpoint: LogPosition,
) -> None:
    """Record `generation` (built by `projection`'s version, up to `checkpoint`) as live."""
    await conn.execute(
        _SWAP,
        projection.name,
        projection.version,
        generation,
        list(projection.tables),
        checkpoint.tx_id,
        checkpoint.global_position,
    )
