"""The executor's application registrations (`services.executor.registrations`): the latest
registration even after deletion, the latest adoption, and each read folding only the tail."""

from __future__ import annotations

from typing import Any

from services.executor.registrations import Registrations
from shared.eventlog import ANY, EventStore, new_events
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    ApplicationAdopted,
    ApplicationDeleted,
    ApplicationRegistered,
)
from tests.support import Backends


def _registered(provider: str, repository: str = "config") -> ApplicationRegistered:
    return ApplicationRegistered(
        application_id="a1",
        name="web",
        repository_id=repository,
        path="apps/web",
        config_filename=".pipe.yaml",
        platform_provider=provider,
    )


class _Counting(EventStore):
    """The real store, counting the events its stream reads return."""

    read_events = 0

    async def read_stream(self, stream_id: str, **options: Any) -> list[RecordedEvent]:
        events = await super().read_stream(stream_id, **options)
        self.read_events += len(events)
        return events


async def _append(store: EventStore, *events: Event) -> None:
    await store.append("application-a1", new_events(list(events)), expected_version=ANY)


async def test_latest_registration_survives_deletion_and_reads_fold_only_the_tail(
    backends: Backends,
) -> None:
    store = backends.store
    counting = _Counting(store.pool, store.registry)
    registrations = Registrations(counting)
    assert (await registrations.of("a1")).platform_provider == ""  # never registered

    await _append(store, _registered("kubesim"), *[_registered("kubesim") for _ in range(49)])
    first = await registrations.of("a1")
    assert (first.repository_id, first.platform_provider, first.next_version) == (
        "config",
        "kubesim",
        50,
    )

    await _append(
        store,
        ApplicationAdopted(
            application_id="a1", running_commit_hash="c1", pipecd_application_id="p"
        ),
        _registered("other", repository="config2"),
        ApplicationDeleted(application_id="a1"),
    )
    counting.read_events = 0
    later = await registrations.of("a1")
    assert (later.repository_id, later.platform_provider, later.pipecd_application_id) == (
        "config2",
        "other",
        "p",
    ), "the latest registration, still after the deletion"
    assert counting.read_events == 3, "only the events after the last read are folded"

    counting.read_events = 0
    assert await registrations.of("a1") == later
    assert counting.read_events == 0


async def test_the_least_recently_read_is_dropped_and_folded_again(backends: Backends) -> None:
    store = backends.store
    await _append(store, _registered("kubesim"))
    registrations = Registrations(store, kept_max=1)
    assert (await registrations.of("a1")).platform_provider == "kubesim"
    assert (await registrations.of("a2")).platform_provider == ""  # a1 dropped
    assert (await registrations.of("a1")).platform_provider == "kubesim"
