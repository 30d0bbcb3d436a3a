"""`EventStore.iter_stream`: a long stream read a page at a time, in order, never whole."""

from __future__ import annotations

from typing import Any

from shared.decider import Functions
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.eventlog.asof import state_as_of
from shared.eventlog.execute import LOAD_PAGE, load
from shared.eventlog.store import DEFAULT_PAGE_SIZE
from shared.events.base import RecordedEvent
from shared.events.catalog import DeploymentCancelRequested

COUNT = 250


class CountingStore(EventStore):
    """The real store, noting how many events each of its reads returned."""

    pages: list[int]

    async def read_stream(self, stream_id: str, **kwargs: object) -> list[RecordedEvent]:
        page = await super().read_stream(stream_id, **kwargs)  # type: ignore[arg-type]
        self.pages.append(len(page))
        return page


async def _long_stream(store: EventStore, count: int = COUNT) -> None:
    events = [DeploymentCancelRequested(deployment_id=f"d{i}") for i in range(count)]
    await store.append("deployment-long", new_events(events), expected_version=NO_STREAM)


async def test_pages_of_a_long_stream_come_in_order_and_whole(store: EventStore) -> None:
    await _long_stream(store)
    counting = CountingStore(store.pool, store.registry)
    counting.pages = []
    paged = [r async for r in counting.iter_stream("deployment-long", page_size=100)]
    assert [r.stream_version for r in paged] == list(range(COUNT))
    assert counting.pages == [100, 100, 50]  # never more than a page at once
    assert paged == await store.read_stream("deployment-long")
    later = [r.stream_version async for r in store.iter_stream("deployment-long", from_version=240)]
    assert later == list(range(240, COUNT))
    up_to = paged[120].global_position
    bounded = [r async for r in store.iter_stream("deployment-long", up_to_position=up_to)]
    assert len(bounded) == 121


async def test_state_as_of_folds_page_by_page(store: EventStore) -> None:
    await _long_stream(store, DEFAULT_PAGE_SIZE * 2 + 7)
    counting = CountingStore(store.pool, store.registry)
    counting.pages = []
    count = await state_as_of(counting, "deployment-long", lambda n, _: n + 1, 0)
    assert count == DEFAULT_PAGE_SIZE * 2 + 7
    assert counting.pages == [DEFAULT_PAGE_SIZE, DEFAULT_PAGE_SIZE, 7]


async def test_load_folds_a_long_stream_page_by_page(store: EventStore) -> None:
    """`shared.eventlog.execute.load`, how deciders' streams are folded (a repository's
    commits, an application's drift), reads pages of LOAD_PAGE events."""
    await _long_stream(store, LOAD_PAGE * 2 + 7)
    counting = CountingStore(store.pool, store.registry)
    counting.pages = []
    counter: Any = Functions(initial=0, evolve_fn=lambda n, _: n + 1, decide_fn=lambda _n, _c: [])
    folded = await load(counting, "deployment-long", counter)
    assert (folded.state, folded.version) == (LOAD_PAGE * 2 + 7, LOAD_PAGE * 2 + 6)
    assert counting.pages == [LOAD_PAGE, LOAD_PAGE, 7]
