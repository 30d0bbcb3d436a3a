"""The one loop of a lease holder: step, wait, repeat, while the lease is ours.

The executor's `DeploymentRunner` and the analysis service's `AnalysisRunner`
each work on one row of a lease table (a deployment, an analysis) for as long
as they hold its lease. Both have the same life, kept here once:

    async with leases.held(lease, ...):   # renewed in the background; released after
        try:
            while not stopped and the lease is not lost:
                wait = await work.step()      # load, decide, append (fenced), start work
                if work.finished: return      # the row is closed: nothing left to do
                await work.wait(stop, wait)   # until the next is due, or news wakes it
        finally:
            await work.close()            # stop its own tasks before the lease goes

The lease's watchdog (shared/leases.py) cancels the step in flight and calls
`work.abandon()` when the lease may soon be another's, so no side effect of
the holder outlives its lease however the step hangs.

And one policy for what a step raises:

- `ConcurrencyConflict`: someone appended meanwhile (a person's request, most
  likely): step again at once, on what they wrote;
- `LeaseLost`: another holder took over: stop at once, write nothing more;
- `Unavailable`: the database or a cluster is away: wait `RETRY_S`, step again;
- anything else is a bug: logged once with its traceback, then the step is
  tried again after `CRASH_RETRY_S`, still holding the lease (a crash of
  the loop itself is the scheduler's: `runner_crashed`, and the row is taken
  again).
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol, TypeVar

from shared.errors import ConcurrencyConflict, Unavailable
from shared.leases import FencedLeases, HeldLease, LeaseLost
from shared.logs import get_logger

__all__ = ["CRASH_RETRY_S", "RETRY_S", "LeasedWork", "run_leased"]

log = get_logger("slipway.leaserun")

RETRY_S: Final = 1.0
CRASH_RETRY_S: Final = 5.0

L = TypeVar("L", bound=HeldLease)


class LeasedWork(Protocol):
    """What a lease holder does on its row, one step at a time."""

    lost: asyncio.Event
    """Set when the lease is no longer ours (by the renewal, or by a fenced append)."""

    @property
    def finished(self) -> bool:
        """The row is closed (the deployment completed, the analysis concluded)."""
        ...

    async def step(self) -> float | None:
        """One pass: the seconds to wait before the next (None: step again at once)."""
        ...

    async def wait(self, stop: asyncio.Event, seconds: float) -> None:
        """Wait `seconds` at most, less when `stop`, `lost` or the work's own news comes."""
        ...

    async def close(self) -> None:
        """Stop what the work started (a stage's task), while the lease is still held."""
        ...

    def abandon(self) -> None:
        """Stop every side effect the work started outside its step (a stage's task, its
        script) at once: the lease's watchdog calls it when the lease may soon be another's,
        however stuck the step is. The step in flight is cancelled too."""
        ...


async def run_leased(
    work: LeasedWork,
    *,
    leases: FencedLeases[L],
    lease: L,
    stop: asyncio.Event,
    what: str,
) -> None:
    """Step `work` while `lease` is held and `stop` is not set; `what` names it in the logs
    (`<what>_step_unavailable`, `<what>_step_crashed`)."""
    # The step in flight, a task of its own so the watchdog can cancel it.
    stepping: list[asyncio.Task[float | None]] = []

    def abandon() -> None:
        for task in stepping:
            task.cancel()
        work.abandon()

    async with leases.held(
        lease, stop=stop, lost=work.lost, finished=lambda: work.finished, abandon=abandon
    ):
        try:
            await _steps(work, stop, what, stepping)
        finally:
            await work.close()


async def _steps(
    work: LeasedWork, stop: asyncio.Event, what: str, stepping: list[asyncio.Task[float | None]]
) -> None:
    while not stop.is_set() and not work.lost.is_set():
        step = asyncio.create_task(work.step(), name=f"{what} step")
        stepping[:] = [step]
        try:
            wait = await step
        except asyncio.CancelledError:
            runner = asyncio.current_task()
            if runner is not None and runner.cancelling():
                raise  # the holder itself is cancelled (the service stops)
            return  # the watchdog stopped the step: the lease is lost
        except ConcurrencyConflict:
            continue
        except LeaseLost as exc:
            log.warning("lease_lost", reason=str(exc))
            work.lost.set()
            return
        except Unavailable as exc:
            log.warning(f"{what}_step_unavailable", error=str(exc), retry_in_s=RETRY_S)
            wait = RETRY_S
        except Exception:  # the top of the holder's loop: a bug is logged, then retried
            log.exception(f"{what}_step_crashed", retry_in_s=CRASH_RETRY_S)
            wait = CRASH_RETRY_S
        if work.finished:
            return
        if wait is not None:
            await work.wait(stop, wait)
