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


async def test_largest_group_is_the_most_items_one_write_held() -> None:
    w = Recorder()
    gc: GroupCommit[str, str] = GroupCommit(w.alone, w.group)
    assert gc.largest_group == 0
    await gc.submit("a", "a1")
    assert gc.largest_group == 1
    await _queued_behind_a_first_write(gc, w, "x1", ("b", "b1"), ("c", "c1"), ("d", "d1"))
    await gc.submit("a", "a2")
    assert gc.largest_group == 3


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


async def test_the_callers_of_a_group_coming_back_together_go_together_again() -> None:
    """Closed-loop writers: the next group waits the loop turn in which a group's callers come
    back, so none of them goes alone ahead of the others (that halved the rate)."""
    w = Recorder()
    gc: GroupCommit[str, str] = GroupCommit(w.alone, w.group)

    async def writer(key: str) -> None:
        for n in range(1, 4):
            await gc.submit(key, f"{key}{n}")

    async with asyncio.timeout(5):
        await asyncio.gather(*(writer(key) for key in "abcd"))
    # a1 finds nothing in flight and goes at once; a2 comes back from it while the others
    # wait for the next group; from then on each group's four callers go together again.
    assert w.calls == [
        ("a1",),
        ("b1", "c1", "d1", "a2"),
        ("b2", "c2", "d2", "a3"),
        ("b3", "c3", "d3"),
    ]


async def test_after_a_write_of_one_nothing_waits_for_its_caller_to_come_back() -> None:
    """A write of one (here b1, queued behind a1) gathers nothing: its caller's next write is
    sent in the very step it is submitted, as a lone writer's always is."""
    w = Recorder()
    gc: GroupCommit[str, str] = GroupCommit(w.alone, w.group)
    sent_at_once: list[bool] = []

    async def b_writer() -> None:
        await gc.submit("b", "b1")
        second = asyncio.ensure_future(gc.submit("b", "b2"))
        await asyncio.sleep(0)  # the one step in which `second` starts
        sent_at_once.append(w.calls[-1] == ("b2",))
        await second

    w.release.clear()
    first = asyncio.ensure_future(gc.submit("a", "a1"))
    await asyncio.sleep(0)
    b = asyncio.ensure_future(b_writer())
    await asyncio.sleep(0)
    w.release.set()
    async with asyncio.timeout(5):
        await asyncio.gather(first, b)
    assert w.calls == [("a1",), ("b1",), ("b2",)] and sent_at_once == [True]


async def test_a_heavy_item_is_written_alone_at_once_beside_a_group_in_flight() -> None:
    """A batch pays for its own commit: it does not wait for the group in flight (a writer
    of batches ran in turns with the others before, never beside them)."""
    w = Recorder()
    gc: GroupCommit[str, str] = GroupCommit(w.alone, w.group)
    w.release.clear()
    small = asyncio.ensure_future(gc.submit("a", "a1"))
    await asyncio.sleep(0)
    assert w.calls == [("a1",)]  # in flight, held
    heavy = asyncio.ensure_future(gc.submit("b", "batch", heavy=True))
    await asyncio.sleep(0)
    assert w.calls == [("a1",), ("batch",)]  # sent while a1 is still in flight
    w.release.set()
    async with asyncio.timeout(5):
        assert list(await asyncio.gather(small, heavy)) == ["wrote a1", "wrote batch"]
    assert gc.heavy_alone == 1


async def test_a_heavy_item_follows_an_earlier_write_to_its_key() -> None:
    """Per-key order holds for heavy items too: one behind a write in flight or queued to
    its key waits for it, and goes in a group after it."""
    w = Recorder()
    gc: GroupCommit[str, str] = GroupCommit(w.alone, w.group)
    w.release.clear()
    first = asyncio.ensure_future(gc.submit("a", "a1"))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(gc.submit("b", "b1"))
    heavy_a = asyncio.ensure_future(gc.submit("a", "a-batch", heavy=True))
    heavy_b = asyncio.ensure_future(gc.submit("b", "b-batch", heavy=True))
    await asyncio.sleep(0)
    assert w.calls == [("a1",)]  # neither batch overtook the write to its key
    w.release.set()
    async with asyncio.timeout(5):
        await asyncio.gather(first, queued, heavy_a, heavy_b)
    assert w.calls[1] == ("b1", "a-batch")
    assert w.calls[2] == ("b-batch",)
    assert gc.heavy_alone == 0
