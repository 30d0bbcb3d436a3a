"""What the log feeds a projection: whole events, or envelopes alone for an `EnvelopeProjection`.

The replay and the live runner read and apply through a `Feed`, so each kind of
projection is given exactly what it folds: an envelope-only projection's rows are
built without the payload and metadata columns ever leaving the database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic

import asyncpg

from shared.eventlog.store import EventStore, LogWindow, R
from shared.projections.base import EnvelopeProjection, Projection


@dataclass(frozen=True)
class Feed(Generic[R]):
    """The store's readers of one kind of record, and the projection's fold of them."""

    read_window: Callable[..., Awaitable[LogWindow[R] | None]]
    """`EventStore.read_window` or `read_envelope_window`."""
    read_all: Callable[..., Awaitable[list[R]]]
    """`EventStore.read_all` or `read_all_envelopes`."""
    apply: Callable[[asyncpg.Connection, Sequence[R], Mapping[str, str]], Awaitable[None]]
    """`Projection.apply_batch` or `EnvelopeProjection.apply_envelopes`."""


def feed_of(store: EventStore, projection: Projection) -> Feed[Any]:
    """How `projection` reads `store`: envelopes alone if it folds nothing more."""
    if isinstance(projection, EnvelopeProjection):
        envelopes: Feed[Any] = Feed(
            store.read_envelope_window, store.read_all_envelopes, projection.apply_envelopes
        )
        return envelopes
    events: Feed[Any] = Feed(store.read_window, store.read_all, projection.apply_batch)
    return events
