"""Fenced leases on the rows of a work table, in PostgreSQL (DESIGN §4).

Each row of such a table is one piece of work (a deployment, an analysis) and
its lease: `holder` works on it until `expires_at`, and `token`, the fencing
token, grows by one each time the lease changes hands. A replica claims the
open rows nobody holds (or whose lease expired, or that are its own from before
a restart) and becomes their holder with a new token; it renews the lease every
third of its time while it works (`FencedLeases.held`) and releases it when it
stops, so another replica can take the work at once.

Every append a holder makes goes through `FencedLeases.append_fenced`, which
checks in the append's own transaction that the lease is still its own with the
same token and holds a share lock on the row until commit, so a takeover (an
UPDATE of the row) cannot slip in between the check and the append: a replica
that stalled past its lease (a long GC pause, a partition) writes nothing after
another took over, even though it still believes it holds the lease. The append
also expects the stream version the holder folded, so anything appended
meanwhile by anyone is a `ConcurrencyConflict`: reload, decide again.

What makes a row claimable beyond the lease (its `closed_at` column unset), the
row's other columns and what an appended event does to the row belong to each
service: it subclasses `FencedLeases` for its own table.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Generic, Protocol, TypeVar

import asyncpg

from shared.aio import sleep_or_stop
from shared.db import CONNECTION_ERRORS
from shared.errors import SlipwayError, Unavailable
from shared.eventlog import EventStore
from shared.events.base import NewEvent
from shared.logs import get_logger

__all__ = ["DEFAULT_TTL_S", "FencedLeases", "HeldLease", "LeaseLost", "LeaseTable"]

log = get_logger("slipway.leases")

DEFAULT_TTL_S: Final = 15.0


class LeaseLost(SlipwayError):
    """The lease is no longer this holder's: stop working on the row, write nothing."""


class HeldLease(Protocol):
    """What the shared statements need of a service's lease: which row, whose, which token."""

    @property
    def key(self) -> str: ...

    @property
    def holder(self) -> str: ...

    @property
    def token(self) -> int: ...


@dataclass(frozen=True)
class LeaseTable:
    """Where one kind of lease lives.

    These names go into the SQL text itself, because identifiers cannot be
    bind parameters: they must come from a service's module constant, never
    from input. `__post_init__` refuses anything but a plain identifier.
    """

    table: str
    key: str  # the primary key column, the work's id
    closed_at: str  # set once the work is done: the row is no longer claimable
    noun: str  # what a row is, for messages ("deployment", "analysis")

    def __post_init__(self) -> None:
        for name in (self.table, self.key, self.closed_at):
            if not name.isidentifier():
                raise ValueError(f"lease table: {name!r} is not a plain SQL identifier")


@dataclass(frozen=True)
class _Statements:
    claim: str
    renew: str
    release: str
    fence: str
    open_count: str

    @classmethod
    def of(cls, t: LeaseTable) -> _Statements:
        return cls(
            # Open, and nobody's (or an expired lease, or our own from before a restart;
            # `running` keeps out what this process works on right now). SKIP LOCKED:
            # replicas claiming at once take different rows instead of queueing.
            claim=f"""
WITH candidates AS (
  SELECT {t.key} FROM {t.table}
  WHERE {t.closed_at} IS NULL
    AND (holder IS NULL OR holder = $1 OR expires_at < clock_timestamp())
    AND NOT ({t.key} = ANY($3::text[]))
  ORDER BY created_at
  LIMIT $2
  FOR UPDATE SKIP LOCKED
)
UPDATE {t.table} l
SET holder = $1, token = l.token + 1,
    expires_at = clock_timestamp() + make_interval(secs => $4),
    updated_at = clock_timestamp()
FROM candidates c
WHERE l.{t.key} = c.{t.key}
RETURNING l.*
""",
            renew=f"""
UPDATE {t.table}
SET expires_at = clock_timestamp() + make_interval(secs => $4), updated_at = clock_timestamp()
WHERE {t.key} = $1 AND holder = $2 AND token = $3 AND {t.closed_at} IS NULL
RETURNING expires_at
""",
            release=f"""
UPDATE {t.table} SET holder = NULL, expires_at = NULL, updated_at = clock_timestamp()
WHERE {t.key} = $1 AND holder = $2 AND token = $3
""",
            fence=f"""
SELECT 1 FROM {t.table}
WHERE {t.key} = $1 AND holder = $2 AND token = $3 AND expires_at > clock_timestamp()
FOR SHARE
""",
            open_count=f"SELECT count(*) FROM {t.table} WHERE {t.closed_at} IS NULL",
        )


L = TypeVar("L", bound=HeldLease)


class FencedLeases(ABC, Generic[L]):
    """A table of fenced leases, for one holder (this replica).

    A subclass names its table (`table`), builds its lease from a claimed row
    (`_lease`) and says what appended events do to the row (`_after_append`).
    """

    table: ClassVar[LeaseTable]

    def __init__(self, store: EventStore, holder: str, *, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.store = store
        self.pool: asyncpg.Pool = store.pool
        self.holder = holder
        self.ttl_s = ttl_s
        self._sql = _Statements.of(self.table)

    @abstractmethod
    def _lease(self, row: asyncpg.Record) -> L:
        """This holder's lease on a row it just claimed."""

    async def _after_append(
        self, conn: asyncpg.Connection, lease: L, events: Sequence[NewEvent]
    ) -> None:
        """What the appended events do to the lease's row, in the append's transaction."""

    def _about(self, lease: L) -> str:
        return f"{self.table.noun} {lease.key}"

    async def claim(self, limit: int, *, running: Sequence[str] = ()) -> list[L]:
        """Take up to `limit` open rows, each with a new fencing token."""
        if limit <= 0:
            return []
        try:
            rows = await self.pool.fetch(
                self._sql.claim, self.holder, limit, list(running), self.ttl_s
            )
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"claim {self.table.noun} leases: {exc}") from exc
        return [self._lease(row) for row in rows]

    async def renew(self, lease: L) -> bool:
        """Extend the lease; False when it is no longer ours (taken over, or closed)."""
        try:
            row = await self.pool.fetchrow(
                self._sql.renew, lease.key, lease.holder, lease.token, self.ttl_s
            )
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"renew the lease on {self._about(lease)}: {exc}") from exc
        return row is not None

    async def release(self, lease: L) -> None:
        """Give the row up now (graceful shutdown), so another replica takes it at once."""
        try:
            await self.pool.execute(self._sql.release, lease.key, lease.holder, lease.token)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"release the lease on {self._about(lease)}: {exc}") from exc

    async def open_count(self) -> int:
        """How many rows are not closed yet (for burst mode)."""
        return int(await self.pool.fetchval(self._sql.open_count))

    async def append_fenced(
        self, lease: L, stream_id: str, events: Sequence[NewEvent], *, expected_version: int
    ) -> None:
        """Append for the lease's row if and only if the lease is still ours.

        Raises `LeaseLost` when it is not (nothing is written) and
        `ConcurrencyConflict` when the stream moved past `expected_version`.
        """
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                held = await conn.fetchval(self._sql.fence, lease.key, lease.holder, lease.token)
                if held is None:
                    raise LeaseLost(
                        f"lease on {self._about(lease)} (token {lease.token}) is no longer "
                        f"held by {lease.holder}"
                    )
                await self.store.append(
                    stream_id, events, expected_version=expected_version, conn=conn
                )
                await self._after_append(conn, lease, events)
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"append to {stream_id}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def held(
        self,
        lease: L,
        *,
        stop: asyncio.Event,
        lost: asyncio.Event,
        finished: Callable[[], bool],
    ) -> AsyncIterator[None]:
        """Keep `lease` renewed while the body works on its row; `lost` is set when it is not
        ours any more. Afterwards the lease is released unless the work is `finished` (the row
        is closed) or the lease was lost."""
        renewing = asyncio.create_task(self._keep_renewed(lease, stop, lost, finished))
        try:
            yield
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            if not finished() and not lost.is_set():
                # Let another replica take it at once rather than after the lease expires.
                with contextlib.suppress(Unavailable):
                    await self.release(lease)

    async def _keep_renewed(
        self, lease: L, stop: asyncio.Event, lost: asyncio.Event, finished: Callable[[], bool]
    ) -> None:
        """Renew every third of the lease's time, so one failed renewal does not lose it."""
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while not stop.is_set() and not lost.is_set():
            await sleep_or_stop(stop, self.ttl_s / 3)
            try:
                if not await self.renew(lease):
                    # A row the holder closed itself (its last append) is not a lost lease.
                    if not finished():
                        log.warning("lease_taken_over")
                        lost.set()
                    return
                renewed = loop.time()
            except Unavailable as exc:
                log.warning("lease_renewal_failed", error=str(exc))
                if loop.time() - renewed >= self.ttl_s:
                    # We cannot know whether someone took it: act as if they did.
                    lost.set()
                    return
