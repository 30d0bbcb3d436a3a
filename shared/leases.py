"""Fenced leases on the rows of a work table, in PostgreSQL (DESIGN §4).

Each row of such a table is one piece of work (a deployment, an analysis) and
its lease: `holder` works on it until `expires_at`, and `token`, the fencing
token, grows by one each time the lease changes hands. A replica claims the
open rows nobody holds (or whose lease expired, or that are its own from before
a restart) and becomes their holder with a new token; it renews the lease every
third of its time while it works (`FencedLeases.held`) and releases it when it
stops, so another replica can take the work at once.

The log is fenced by the token; the world (a `kubectl apply`, a script) is fenced
in time: a holder keeps a local watchdog and stops its work — `held(abandon=…)`
cancels the stage, which kills the script's process group — at
`sent + ttl − margin`, `sent` being when the last successful renewal (or the
claim) was *sent*, on this process's monotonic clock. The lease expires no
earlier than `ttl` after the server ran that statement, which is after it was
sent, so the holder has stopped `margin` before anybody else may take over,
however long its connection hangs. Each renewal has its own short timeout
(`renew_timeout_s`), so a renewal that hangs is tried again before the deadline
instead of keeping the watchdog waiting.

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
import time
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

__all__ = ["DEFAULT_TTL_S", "FencedLeases", "HeldLease", "LeaseLost", "LeaseTable", "deadline_of"]

log = get_logger("slipway.leases")

DEFAULT_TTL_S: Final = 15.0


def deadline_of(sent: float, ttl_s: float, margin_s: float) -> float:
    """When a holder must have stopped, on its monotonic clock: `ttl_s − margin_s` after it
    sent the claim or renewal that last succeeded (the server's expiry is later still)."""
    return sent + ttl_s - margin_s


class LeaseLost(SlipwayError):
    """The lease is no longer this holder's: stop working on the row, write nothing."""


class HeldLease(Protocol):
    """What the shared statements need of a service's lease: which row, whose, which token."""

    @property
    def key(self) -> str:
        """The leased row's key (a deployment or analysis id)."""

    @property
    def holder(self) -> str:
        """Who holds the lease (a service instance)."""

    @property
    def token(self) -> int:
        """The fencing token: higher with every new holder."""


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

    def __init__(
        self,
        store: EventStore,
        holder: str,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        margin_s: float | None = None,
        renew_timeout_s: float | None = None,
    ) -> None:
        """`margin_s` (default a fifth of the lease) is how long before the lease can expire
        the holder stops its work: time to kill a script, and slack for clocks that run at
        different rates. `renew_timeout_s` (default a sixth) bounds one renewal."""
        self.store = store
        self.pool: asyncpg.Pool = store.pool
        self.holder = holder
        self.ttl_s = ttl_s
        self.margin_s = ttl_s / 5 if margin_s is None else margin_s
        self.renew_timeout_s = ttl_s / 6 if renew_timeout_s is None else renew_timeout_s
        if not 0 < self.margin_s < ttl_s or not 0 < self.renew_timeout_s < ttl_s:
            raise ValueError(
                f"lease margin ({self.margin_s} s) and renewal timeout ({self.renew_timeout_s} s) "
                f"must be positive and shorter than the lease ({ttl_s} s)"
            )
        self._sql = _Statements.of(self.table)
        # When the claim of each lease this holder took was sent (monotonic): its first deadline.
        self._claim_sent: dict[tuple[str, int], float] = {}

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
        sent = time.monotonic()
        try:
            rows = await self.pool.fetch(
                self._sql.claim, self.holder, limit, list(running), self.ttl_s
            )
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"claim {self.table.noun} leases: {exc}") from exc
        leases = [self._lease(row) for row in rows]
        for lease in leases:
            self._claim_sent[lease.key, lease.token] = sent
        return leases

    async def renew(self, lease: L) -> bool:
        """Extend the lease; False when it is no longer ours (taken over, or closed).

        At most `renew_timeout_s`, waiting for a connection included; a connection that
        did not answer in time is closed (it may hang for good) and `Unavailable` raised.
        """
        what = f"renew the lease on {self._about(lease)}"
        try:
            async with asyncio.timeout(self.renew_timeout_s):
                async with self.pool.acquire() as conn:
                    try:
                        row = await conn.fetchrow(
                            self._sql.renew, lease.key, lease.holder, lease.token, self.ttl_s
                        )
                    except (TimeoutError, asyncio.CancelledError):
                        conn.terminate()  # never hand a connection that hangs to anyone
                        raise
        except TimeoutError:
            raise Unavailable(f"{what}: no answer within {self.renew_timeout_s:g} s") from None
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"{what}: {exc}") from exc
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
        abandon: Callable[[], None] = lambda: None,
    ) -> AsyncIterator[None]:
        """Keep `lease` renewed while the body works on its row; `lost` is set when it is not
        ours any more, and `abandon` is called at that moment: it must stop every side effect
        of the body at once (cancel the stage's task, which kills its script) — it runs when
        the watchdog's deadline passes, however stuck the body is. Afterwards the lease is
        released unless the work is `finished` (the row is closed) or the lease was lost."""
        sent = self._claim_sent.pop((lease.key, lease.token), None)
        renewing = asyncio.create_task(
            self._keep_renewed(lease, sent, stop, lost, finished, abandon)
        )
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
        self,
        lease: L,
        sent: float | None,
        stop: asyncio.Event,
        lost: asyncio.Event,
        finished: Callable[[], bool],
        abandon: Callable[[], None],
    ) -> None:
        """Renew every third of the lease's time, so one failed renewal does not lose it; stop
        the work at the watchdog's deadline unless a renewal succeeded before it."""
        if sent is None:
            # Not claimed by this object (a test's hand-made lease): renew now to know.
            sent = time.monotonic()
            try:
                if not await self.renew(lease):
                    self._lose(lost, abandon, finished, "lease_taken_over")
                    return
            except Unavailable:
                self._lose(lost, abandon, finished, "lease_not_renewed")
                return
        deadline = deadline_of(sent, self.ttl_s, self.margin_s)
        next_renewal = sent + self.ttl_s / 3
        while not stop.is_set() and not lost.is_set():
            await sleep_or_stop(stop, min(next_renewal, deadline) - time.monotonic())
            if stop.is_set() or lost.is_set():
                return
            if time.monotonic() >= deadline:
                # We cannot know whether someone took it: stop before they may have.
                self._lose(lost, abandon, finished, "lease_deadline_passed")
                return
            attempt = time.monotonic()
            # A failed attempt is retried sooner, still at least twice before the deadline.
            next_renewal = attempt + min(self.ttl_s / 3, max((deadline - attempt) / 2, 0.05))
            try:
                # Never past the deadline: the watchdog fires on time however the call hangs.
                async with asyncio.timeout(deadline - attempt):
                    ours = await self.renew(lease)
            except TimeoutError:
                self._lose(lost, abandon, finished, "lease_deadline_passed")
                return
            except Unavailable as exc:
                log.warning("lease_renewal_failed", error=str(exc))
                continue
            if not ours:
                # A row the holder closed itself (its last append) is not a lost lease.
                if not finished():
                    self._lose(lost, abandon, finished, "lease_taken_over")
                return
            deadline = deadline_of(attempt, self.ttl_s, self.margin_s)
            next_renewal = attempt + self.ttl_s / 3

    def _lose(
        self,
        lost: asyncio.Event,
        abandon: Callable[[], None],
        finished: Callable[[], bool],
        why: str,
    ) -> None:
        if finished():
            return
        log.warning(why, ttl_s=self.ttl_s, margin_s=self.margin_s)
        lost.set()
        abandon()
