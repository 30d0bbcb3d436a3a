"""The lease holder's one crash policy (`shared.leaserun`): what each kind of failure does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from shared.errors import ConcurrencyConflict, Unavailable
from shared.leaserun import CRASH_RETRY_S, RETRY_S, _steps
from shared.leases import LeaseLost


class Scripted:
    """Work whose steps raise or return what a script says; waits are recorded, not slept."""

    def __init__(self, script: list[BaseException | float | None]) -> None:
        self.lost = asyncio.Event()
        self.script: Iterator[BaseException | float | None] = iter(script)
        self.steps = 0
        self.waits: list[float] = []
        self.done = False

    @property
    def finished(self) -> bool:
        return self.done

    async def step(self) -> float | None:
        self.steps += 1
        outcome = next(self.script, "finish")
        if outcome == "finish":
            self.done = True
            return None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    # The clock interface is wait(stop, seconds); this fake only records the seconds.
    async def wait(self, stop: asyncio.Event, seconds: float) -> None:  # noqa: ARG002
        self.waits.append(seconds)

    def abandon(self) -> None:
        """Nothing of this work runs outside its step, so there is nothing to stop."""

    async def close(self) -> None:
        pass


async def test_a_conflict_steps_again_at_once_an_outage_and_a_bug_back_off() -> None:
    """Conflict: no wait; Unavailable: RETRY_S; any other exception: logged, CRASH_RETRY_S;
    a step's own wait is kept; the loop ends when the work is finished."""
    work = Scripted(
        [ConcurrencyConflict("s", 1), Unavailable("db"), RuntimeError("bug"), 0.25, None]
    )
    await _steps(work, asyncio.Event(), "test", [])
    assert work.finished and work.steps == 6
    assert work.waits == [RETRY_S, CRASH_RETRY_S, 0.25]


async def test_a_lost_lease_stops_at_once_and_says_so() -> None:
    """`LeaseLost` sets `lost` and ends the loop: no further step, no wait."""
    work = Scripted([LeaseLost("taken over"), 0.1])
    await _steps(work, asyncio.Event(), "test", [])
    assert work.lost.is_set() and work.steps == 1 and work.waits == []


async def test_a_stopped_service_takes_no_step() -> None:
    """With `stop` set the loop returns before stepping."""
    work = Scripted([0.1])
    stop = asyncio.Event()
    stop.set()
    await _steps(work, stop, "test", [])
    assert work.steps == 0
