"""Queries of the `applications` view, and waiting for it to reach a log position.

The view is a projection, kept by the projector service: it lags the log by
the time a batch takes (tens of milliseconds when idle). Reads are therefore
eventually consistent; a caller that must see its own write passes the
`position` that write answered with as `min_position`, and the read first
waits, for at most `read_wait_s`, until the projection's checkpoint has
passed the event at that position (in commit order, the order projections
apply events in: shared/eventlog/store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Final

import asyncpg
import msgspec

from services.api import resources
from services.api.errors import RETRY_AFTER_S, ErrorReply
from services.api.schemas import ApplicationResource
from shared.db import unavailable_on_disconnect
from shared.errors import Unavailable
from shared.eventlog import EventStore
from shared.events.catalog import ApplicationRegistered
from shared.events.streams import application_stream

__all__ = [
    "LIST_APPLICATIONS",
    "PROJECTION",
    "ApplicationFilter",
    "application_names",
    "get_application",
    "list_applications",
    "view_query",
    "wait_for_position",
]

PROJECTION: Final = "applications"
_POLL_S: Final = 0.02

_COLUMNS: Final = """application_id, name, repository_id, path, config_filename,
platform_provider, labels, disabled, registered_at, updated_at, last_position,
registered_labels, config_labels, description, sync_state, sync"""

# Keyset-paginated by name: a page is a range of the projection's name index.
LIST_APPLICATIONS: Final = f"""
SELECT {_COLUMNS} FROM applications
WHERE ($1::text IS NULL OR name = $1)
  AND ($2::jsonb IS NULL OR labels @> $2::jsonb)
  AND ($3::boolean IS NULL OR disabled = $3)
  AND ($4::text IS NULL OR repository_id = $4)
  AND ($5::text IS NULL OR name > $5)
  AND ($7::text[] IS NULL OR sync_state = ANY($7::text[]))
ORDER BY name
LIMIT $6
"""

# An id wins over a name that happens to look like one.
_GET: Final = f"""
SELECT {_COLUMNS} FROM applications WHERE application_id = $1 OR name = $1
ORDER BY application_id = $1 DESC LIMIT 1
"""

# Compared in commit order: a checkpoint with a larger position may still be
# behind an event that committed later. No row for the position (not committed
# yet, or never) reads as false, and the caller keeps waiting.
_REACHED: Final = """
SELECT EXISTS (
  SELECT 1 FROM projection_state p, events e
  WHERE p.name = $1 AND e.global_position = $2
    AND (p.tx_id, p.position) >= (e.tx_id, e.global_position)
)
"""

_NAMES: Final = """
SELECT application_id, name FROM applications WHERE application_id = ANY($1::text[])
"""

_LAST_POSITION: Final = "SELECT max(global_position) FROM events"

_json = msgspec.json.Encoder()


@contextlib.asynccontextmanager
async def view_query(what: str, read_model: str) -> AsyncIterator[None]:
    """Around a query of a read model's view: `Unavailable` when the database is
    unreachable, or when the view is not there yet (its projection never installed)."""
    async with unavailable_on_disconnect(what):
        try:
            yield
        except asyncpg.UndefinedTableError as exc:
            raise Unavailable(
                f"{what}: the {read_model} is not installed yet (is the projector service running?)"
            ) from exc


def _view(what: str) -> contextlib.AbstractAsyncContextManager[None]:
    return view_query(what, f"{PROJECTION} projection")


class ApplicationFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which applications a listing wants; None (or no labels) matches any."""

    name: str | None = None
    labels: Mapping[str, str] = msgspec.field(default_factory=dict)
    """Each of these labels, with these values."""
    disabled: bool | None = None
    repository_id: str | None = None
    sync_states: tuple[str, ...] | None = None
    """Any of these sync states."""


async def list_applications(
    pool: asyncpg.Pool,
    wanted: ApplicationFilter = ApplicationFilter(),  # noqa: B008 - frozen, so safe to share
    *,
    after: str | None = None,
    limit: int = 100,
) -> tuple[list[ApplicationResource], str | None]:
    """One page of matching applications by name after `after`, and the next page's cursor."""
    labels = _json.encode(dict(wanted.labels)).decode() if wanted.labels else None
    async with _view("list applications"):
        rows = await pool.fetch(
            LIST_APPLICATIONS,
            wanted.name,
            labels,
            wanted.disabled,
            wanted.repository_id,
            after,
            limit + 1,
            list(wanted.sync_states) if wanted.sync_states else None,
        )
    items = [resources.from_row(row) for row in rows[:limit]]
    return items, (items[-1].name if len(rows) > limit else None)


async def get_application(pool: asyncpg.Pool, ref: str) -> ApplicationResource | None:
    """The application whose id or name is `ref`."""
    async with _view("get application"):
        row = await pool.fetchrow(_GET, ref)
    return None if row is None else resources.from_row(row)


async def application_names(
    pool: asyncpg.Pool, store: EventStore, ids: Iterable[str]
) -> dict[str, tuple[str, bool]]:
    """Each application id's name and whether it is deleted, for showing deployments.

    A deleted application has left the view, but its stream still opens with
    its registration, which names it. An id neither knows maps to `("", False)`.
    """
    wanted = sorted(set(ids))
    async with _view("application names"):
        rows = await pool.fetch(_NAMES, wanted)
    names = {row["application_id"]: (row["name"], False) for row in rows}
    for application_id in wanted:
        if application_id in names:
            continue
        names[application_id] = ("", False)
        try:
            stream = application_stream(application_id)
        except ValueError:
            continue  # not an id any application could have
        first = await store.read_stream(stream, limit=1)
        if first and isinstance(first[0].event, ApplicationRegistered):
            names[application_id] = (first[0].event.name, True)
    return names


async def wait_for_position(
    pool: asyncpg.Pool, position: int, *, timeout_s: float, projection: str = PROJECTION
) -> None:
    """Return once `projection` has applied the event at `position`; 503 after `timeout_s`."""
    if position <= 0:
        return
    async with unavailable_on_disconnect("check min_position"):
        last = await pool.fetchval(_LAST_POSITION)
    if last is None or position > last:
        # Positions come from answered writes, whose events are committed: one past
        # the log's end was never answered to anyone, and waiting would not help.
        raise ErrorReply(
            400,
            "invalid_request",
            f"min_position {position} is beyond the log's last position ({last or 0})",
            field="min_position",
        )
    deadline = time.monotonic() + timeout_s
    while True:
        async with unavailable_on_disconnect(f"wait for the {projection} projection"):
            if await pool.fetchval(_REACHED, projection, position):
                return
        if time.monotonic() >= deadline:
            raise ErrorReply(
                503,
                "projection_lagging",
                f"the {projection} projection has not reached position {position} within "
                f"{timeout_s:g} s (is the projector service running?)",
                field="min_position",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        await asyncio.sleep(_POLL_S)
