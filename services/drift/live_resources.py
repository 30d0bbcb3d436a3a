"""Record an application's live objects on `liveresources-<id>` when they changed.

The drift service reads the tree each round on every cluster the application
uses (`RoutedPlatform.live_tree`),
`shared.platform.livetree.observe` turns it into the bounded event, and this
shell appends it only when its digest differs from the newest recorded one: a
quiet application adds nothing to the log. The newest event is read alone (the
stream's last version, then that one row), so a long history costs nothing;
the append expects that version, so two replicas never record one change twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from shared.errors import ConcurrencyConflict
from shared.eventlog.envelope import envelope
from shared.eventlog.execute import StreamStore
from shared.eventlog.store import NO_STREAM, new_events
from shared.events.catalog import ApplicationLiveResourcesObserved
from shared.events.streams import live_resources_stream
from shared.platform.livetree import Listed, changed, observe

__all__ = ["LiveResourcesStore", "last_digest", "record_live_resources"]


class LiveResourcesStore(StreamStore, Protocol):
    """What recording live resources needs of the store: a stream's version and appends."""

    async def stream_version(self, stream_id: str) -> int:
        """The stream's last version, or `NO_STREAM`."""


async def last_digest(store: LiveResourcesStore, application_id: str) -> tuple[int, str | None]:
    """The stream's version and the newest recorded digest (None before the first)."""
    stream = live_resources_stream(application_id)
    version = await store.stream_version(stream)
    if version == NO_STREAM:
        return version, None
    newest = await store.read_stream(stream, from_version=version, limit=1)
    event = newest[0].event if newest else None
    return version, event.digest if isinstance(event, ApplicationLiveResourcesObserved) else None


async def record_live_resources(
    store: LiveResourcesStore,
    application_id: str,
    objects: Listed | Mapping[str, Listed],
    *,
    actor: str,
) -> ApplicationLiveResourcesObserved | None:
    """Append what `objects` (each provider's, as `observe` takes them) are now, unless it
    is what was last recorded; the event appended, or None (unchanged, or another replica
    recorded it first)."""
    observed = observe(application_id, objects)
    version, digest = await last_digest(store, application_id)
    if not changed(digest, observed):
        return None
    try:
        await store.append(
            live_resources_stream(application_id),
            new_events([observed], metadata=envelope(actor=actor)),
            expected_version=version,
        )
    except ConcurrencyConflict:
        return None  # another replica recorded the change meanwhile; next round compares
    return observed
