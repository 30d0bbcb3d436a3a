"""What the executor needs of an application's stream: its latest registration (kept even
after the application is deleted: a deployment planned before the deletion still runs to
its end) and the PipeCD id its latest adoption names.

An application's stream grows with every sync, so it is folded once and then only by its
tail: each read fetches the events after the version folded last (the log is append-only,
so what was folded stays a prefix of the stream). The folding itself is pure
(`fold_registration`); `Registrations` keeps the folded prefixes, a bounded number of them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

import msgspec

from shared.eventlog import EventStore
from shared.events.base import RecordedEvent
from shared.events.catalog import ApplicationAdopted, ApplicationRegistered
from shared.events.streams import application_stream

__all__ = ["Registration", "Registrations", "fold_registration"]

KEPT_MAX: Final = 20_000
"""Applications whose folded prefix is kept (a few hundred bytes each); the least recently
read is dropped first and folded from its start again if it is read again."""


class Registration(msgspec.Struct, frozen=True, kw_only=True):
    """An application as its stream's prefix up to `next_version` says."""

    repository_id: str = ""
    """From the latest `ApplicationRegistered` ("" if never registered)."""
    platform_provider: str = ""
    """From the latest `ApplicationRegistered` ("" if never registered)."""
    pipecd_application_id: str = ""
    """From the latest `ApplicationAdopted` ("" if never adopted)."""
    next_version: int = 0
    """The version of the first event not folded yet."""


def fold_registration(start: Registration, history: Iterable[RecordedEvent]) -> Registration:
    """`start` after the stream's next events (`history`, in order, from `start.next_version`)."""
    folded = start
    for recorded in history:
        event = recorded.event
        if isinstance(event, ApplicationRegistered):
            folded = msgspec.structs.replace(
                folded,
                repository_id=event.repository_id,
                platform_provider=event.platform_provider,
            )
        elif isinstance(event, ApplicationAdopted):
            folded = msgspec.structs.replace(
                folded, pipecd_application_id=event.pipecd_application_id
            )
        folded = msgspec.structs.replace(folded, next_version=recorded.stream_version + 1)
    return folded


class Registrations:
    """The applications' folded prefixes, read on by their tails."""

    def __init__(self, store: EventStore, *, kept_max: int = KEPT_MAX) -> None:
        self.store = store
        self.kept_max = kept_max
        self._kept: OrderedDict[str, Registration] = OrderedDict()

    async def of(self, application_id: str) -> Registration:
        """The application as its whole stream says now (reading only what is new)."""
        start = self._kept.get(application_id, Registration())
        tail = await self.store.read_stream(
            application_stream(application_id), from_version=start.next_version
        )
        folded = fold_registration(start, tail)
        # Concurrent reads of one application: keep the longest prefix folded.
        kept = self._kept.get(application_id)
        if kept is None or kept.next_version <= folded.next_version:
            self._kept[application_id] = folded
        self._kept.move_to_end(application_id)
        while len(self._kept) > self.kept_max:
            self._kept.popitem(last=False)
        return folded
