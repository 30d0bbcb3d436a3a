"""The claim loop of a leased work table: claim what is runnable, run one task a lease (DESIGN §4).

The executor and the analysis service schedule their work the same way: every
claim interval — or at once when woken (a new row registered, a runner done) —
claim up to `max_concurrent` minus what runs now of the open rows nobody holds
(`FencedLeases.claim`), start a task for each claimed lease, and on `stop` wait
for the running tasks, which see `stop` too and release their leases.

What a task does with its lease, and what the service keeps about its runners,
belong to the service: it gives `start`, which turns a claimed lease into the
coroutine that works on it, and `forget`, called when that coroutine ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

import structlog

from shared.errors import Unavailable
from shared.leases import FencedLeases, HeldLease

__all__ = ["LeaseScheduler"]

L = TypeVar("L", bound=HeldLease)


class LeaseScheduler(Generic[L]):
    """Runs one task per lease this replica claims, at most `max_concurrent` at once."""

    def __init__(
        self,
        leases: FencedLeases[L],
        *,
        start: Callable[[L, asyncio.Event], Coroutine[Any, Any, None]],
        forget: Callable[[str], None] = lambda _key: None,
        claim_interval_s: float,
        max_concurrent: int,
        backlog: Callable[[], Awaitable[int]] | None = None,
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        self.leases = leases
        self.start = start
        self.forget = forget
        self.claim_interval_s = claim_interval_s
        self.max_concurrent = max_concurrent
        self.backlog = backlog
        """Events not yet consumed that may register more work: burst mode waits for them."""
        self.log = log
        self.ran: list[str] = []
        """Every row this replica took up, by key, in order (for tests and metrics)."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Claim now rather than at the next interval (a row was registered)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        """Claim and run until `stop` (or, in burst mode, until nothing is left to run)."""
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self._claim(stop)
                    if burst and await self._idle():
                        self.log.info("burst_done", ran=len(self.ran))
                        return
                except Unavailable as exc:
                    self.log.warning("claim_unavailable", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.claim_interval_s)
        finally:
            # The tasks see `stop` too; they finish (releasing their leases) before we return.
            if self._tasks:
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _claim(self, stop: asyncio.Event) -> None:
        free = self.max_concurrent - len(self._tasks)
        for lease in await self.leases.claim(free, running=list(self._tasks)):
            self._start(lease, stop)

    async def _idle(self) -> bool:
        if self._tasks:
            return False
        if self.backlog is not None and await self.backlog() > 0:
            return False
        return await self.leases.open_count() == 0

    def _start(self, lease: L, stop: asyncio.Event) -> None:
        key = lease.key
        work = self.start(lease, stop)
        self.ran.append(key)
        task = asyncio.create_task(work, name=f"{self.leases.table.noun} {key}")
        self._tasks[key] = task
        task.add_done_callback(lambda t: self._done(key, t))

    def _done(self, key: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(key, None)
        self.forget(key)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Logged under the work's own id field (`deployment_id`, `analysis_id`).
            self.log.error("runner_crashed", **{self.leases.table.key: key}, error=repr(exc))
        self._wake.set()  # room for another, or a crashed one to take again
