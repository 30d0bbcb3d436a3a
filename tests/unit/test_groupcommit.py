"""`GroupCommit`'s own rules, with writers that record what they were given (no database)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shared.eventlog.groupcommit import ALONE, Alone, GroupCommit, Limits


class Recorder:
    """Writes that take one loop turn each and record what each call held."""

    def __init__(self, alone_for: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.alone_for = alone_for
        self.release = asyncio.Event()
        self.release.set()

    async def alone(self, item: str) -> str:
        self.calls.append((item,))
        await self.release.wait()
        await asyncio.sleep(0)
        return f"wrote {item}"

    async def group(self, items: Sequence[str]) -> list[str | BaseException | Alone]:
        self.calls.append(tuple(items))
        await self.release.wait()
        await asyncio.sleep(0)
        return [ALONE if item in self.alone_for else f"wrote {item}" for item in items]


async def _queued_behind_a_first_write(
    gc: GroupCommit[str, str], w: Recorder, first: str, *queued: tuple[str, str]
) -> list[str]:
    """`first` goes alone and is held until every one of `queued` (key, item) has queued."""
    w.release.clear()
    tasks = [asyncio.ensure_future(gc.submit(first, first))]
    await asyncio.sleep(0)
    tasks += [asyncio.ensure_future(gc.submit(key, item)) for key, item in queued]
    await asyncio.sleep(0)
    w.release.set()
    async with asyncio.timeout(5):
        return list(await asyncio.gather(*tasks))


async def test_what_arrives_during_a_write_goes_in_one_group_one_item_per_key() -> None:
    w = Recorder()
    gc: GroupCommit[str, str] = GroupCommit(w.alone, w.group)
    results = await _queued_behind_a_first_write(gc, w, "a1", ("b", "b1"), ("c", "c1"), ("b", "b2"))
    assert results == ["wrote a1", "wrote b1", "wrote c1", "wrote b2"]
    # b2 waits for b1's group: one write per key at a time, in the order they came.
    assert w.calls == [("a1",), ("b1", "c1"), ("b2",)]
    assert gc.groups == 1


async def test_an_item_the_group_cannot_settle_is_written_alone_and_its_key_waits() -> None:
    w = Recorder(alone_for=frozenset({"b1"}))
    gc: GroupCommit[str, str] = GroupCommit(w.alone, w.group)
    results = await _queued_behind_a_first_write(gc, w, "x1", ("b", "b1"), ("c", "c1"), ("b", "b2"))
    assert results == ["wrote x1", "wrote b1", "wrote c1", "wrote b2"]
    assert w.calls == [("x1",), ("b1", "c1"), ("b1",), ("b2",)]


async def test_a_caller_cancelled_while_queued_is_never_written() -> None:
    w = Recorder()
    gc: GroupCommit[str, str] = GroupCommit(w.alone, w.group)
    w.release.clear()
    first = asyncio.ensure_future(gc.submit("a", "a1"))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(gc.submit("b", "b1"))
    kept = asyncio.ensure_future(gc.submit("c", "c1"))
    await asyncio.sleep(0)
    gone.cancel()
    w.release.set()
    assert await first == "wrote a1" and await kept == "wrote c1"
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert all("b1" not in call for call in w.calls)


async def test_a_failing_group_fails_each_of_its_callers_and_the_next_group_still_goes() -> None:
    failures = 0

    async def alone(item: str) -> str:
        await asyncio.sleep(0)
        return item

    async def group(items: Sequence[str]) -> list[str | BaseException | Alone]:
        nonlocal failures
        await asyncio.sleep(0)
        if failures == 0 and len(items) > 1:
            failures += 1
            raise ConnectionResetError("cut")
        return list(items)

    gc: GroupCommit[str, str] = GroupCommit(alone, group, limits=Limits(items=2))
    outcomes = await asyncio.gather(
        *(gc.submit(k, k) for k in ("a", "b", "c", "d", "e")), return_exceptions=True
    )
    assert outcomes[0] == "a"
    assert [type(o) for o in outcomes[1:3]] == [ConnectionResetError] * 2
    assert outcomes[3:] == ["d", "e"]
