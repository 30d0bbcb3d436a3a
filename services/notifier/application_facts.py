"""An application's latest registration, read on from the version last read.

Every routed event needs its application's name and labels: the latest
`ApplicationRegistered` in `application-<id>`. Reading that stream from its
start for each event cost its whole length per notification, and an
application's stream grows with every sync. This keeps, per application, the
latest registration found and the version read up to, and reads only the
events after it.

Never the truth, only a prefix of it: a stream's committed versions never
change, and a later transaction sees at least what an earlier one did, so the
events after the version kept are all that can change the answer. An
application dropped from the cache (least recently used) is read from its start.
"""

from __future__ import annotations

from collections import OrderedDict

import asyncpg

from shared.eventlog import NO_STREAM, EventStore
from shared.events.catalog import ApplicationRegistered
from shared.events.streams import application_stream

DEFAULT_CAPACITY = 16384
"""Applications whose latest registration is kept: more than ten thousand, a few MB."""


class LatestRegistrations:
    """The latest `ApplicationRegistered` of an application, read incrementally."""

    def __init__(self, store: EventStore, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self.store = store
        self.capacity = capacity
        self._known: OrderedDict[str, tuple[int, ApplicationRegistered | None]] = OrderedDict()

    async def latest(
        self, application_id: str, conn: asyncpg.Connection
    ) -> ApplicationRegistered | None:
        """The application's latest registration now (None: never registered)."""
        version, registered = self._known.get(application_id, (NO_STREAM, None))
        tail = await self.store.read_stream(
            application_stream(application_id), from_version=version + 1, conn=conn
        )
        for recorded in tail:
            if isinstance(recorded.event, ApplicationRegistered):
                registered = recorded.event
        if tail:
            version = tail[-1].stream_version
        self._known[application_id] = (version, registered)
        self._known.move_to_end(application_id)
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)
        return registered
