"""Queries of the `discovered_configs` view: the unregistered applications.

A config is unregistered while it was discovered (`discovered_position` set) and no
application is registered at it (`registered_by` NULL): the projection's module
(`shared/projections/discovered.py`) says when each changes. Listed in the order
they were discovered, a page being a range of the view's partial index.
"""

from __future__ import annotations

from typing import Final

import asyncpg
import msgspec

from services.api.reads import view_query
from services.api.schemas import UnregisteredApplication

__all__ = ["PROJECTION", "get_unregistered", "list_unregistered"]

PROJECTION: Final = "discovered_configs"

_COLUMNS: Final = """config_id, repository_id, path, config_filename, name, kind, labels,
commit_hash, discovered_at, discovered_position"""
_UNREGISTERED: Final = "registered_by IS NULL AND discovered_position IS NOT NULL"

_LIST: Final = f"""
SELECT {_COLUMNS} FROM discovered_configs
WHERE {_UNREGISTERED}
  AND ($1::text IS NULL OR repository_id = $1)
  AND ($2::bigint IS NULL OR discovered_position > $2)
ORDER BY discovered_position
LIMIT $3
"""

_GET: Final = f"SELECT {_COLUMNS} FROM discovered_configs WHERE config_id = $1 AND {_UNREGISTERED}"

_labels = msgspec.json.Decoder(dict[str, str])


async def list_unregistered(
    pool: asyncpg.Pool, *, repository_id: str | None, after: int | None, limit: int
) -> tuple[list[UnregisteredApplication], str | None]:
    """One page of unregistered applications discovered after the position `after`, and
    the next page's cursor."""
    async with view_query("list unregistered applications", f"{PROJECTION} projection"):
        rows = await pool.fetch(_LIST, repository_id, after, limit + 1)
    items = [_resource(row) for row in rows[:limit]]
    more = len(rows) > limit
    return items, (str(rows[limit - 1]["discovered_position"]) if more else None)


async def get_unregistered(pool: asyncpg.Pool, config: str) -> UnregisteredApplication | None:
    """The unregistered application whose id is `config`; None when there is none (never
    discovered, or registered)."""
    async with view_query("get an unregistered application", f"{PROJECTION} projection"):
        row = await pool.fetchrow(_GET, config)
    return None if row is None else _resource(row)


def _resource(row: asyncpg.Record) -> UnregisteredApplication:
    return UnregisteredApplication(
        id=row["config_id"],
        repository_id=row["repository_id"],
        # As registering takes it: the root is '.'.
        path=row["path"] or ".",
        config_filename=row["config_filename"],
        name=row["name"],
        kind=row["kind"],
        labels=_labels.decode(row["labels"]),
        commit_hash=row["commit_hash"],
        discovered_at=row["discovered_at"],
    )
