"""What one subscription asked for, and the documents each event becomes for it.

A `Selection` (categories, event types, an application, a format) is what
a subscriber chose: SSE query parameters and a raw-event webhook's config
parse into the same one, so filtering means the same everywhere. A `Feed`
applies it to events in log order: it drops what is not selected and renders
the rest (`shared.events.outbound`). Two facts need more than the event:

- the application of an event that does not name one (a `stage_started` is
  about a deployment): the first event of its stream names it;
- a CDEvent's context (the plan a `deployment_completed` follows).

Both come from the event's own stream, which the feed keeps for the streams
it has seen and reads (through the `read_stream` it is given: the edge does
the I/O) when it joins a stream part-way, e.g. after resuming from a cursor.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import msgspec

from shared.errors import SlipwayError
from shared.events.base import RecordedEvent
from shared.events.catalog import default_registry
from shared.events.outbound import Document, Format, needs_history, parse_format, render
from shared.streams import category_of

__all__ = ["Feed", "ReadStream", "Selection", "SelectionError", "selection_of"]

ReadStream = Callable[[str, int], Awaitable[list[RecordedEvent]]]
"""`(stream_id, n)`: the first `n` events of the stream (versions 0..n-1)."""

_TOKEN: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_APPLICATION: Final = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_KEPT_STREAMS: Final = 512


class SelectionError(SlipwayError, ValueError):
    """A subscription asked for something that is not there; `field` names which part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Selection(msgspec.Struct, frozen=True, kw_only=True):
    """Which events a subscription receives, and how. Empty sets select everything."""

    categories: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    application: str = ""
    format: Format = "native"

    def wants_type(self, recorded: RecordedEvent) -> bool:
        """Whether the selection asks for this event's category and type."""
        return (not self.categories or category_of(recorded.stream_id) in self.categories) and (
            not self.types or recorded.event_type in self.types
        )


def selection_of(
    *,
    categories: Iterable[str] = (),
    types: Iterable[str] = (),
    application: str | None = None,
    fmt: str | None = None,
    where: str = "",
) -> Selection:
    """A checked `Selection`; `SelectionError` naming the field (its message prefixed by
    `where`) otherwise."""
    prefix = f"{where}: " if where else ""
    cats = frozenset(c for c in categories if c)
    for category in sorted(cats):
        if not _TOKEN.match(category):
            raise SelectionError(
                "category", f"{prefix}category {category!r} is not a stream category"
            )
    kinds = frozenset(t for t in types if t)
    known = default_registry()
    unknown = sorted(t for t in kinds if t not in known)
    if unknown:
        listed = ", ".join(map(repr, unknown))
        raise SelectionError("type", f"{prefix}type: unknown event type(s) {listed}")
    if application and not _APPLICATION.match(application):
        raise SelectionError(
            "application", f"{prefix}application {application!r} is not an application id"
        )
    try:
        chosen = parse_format(fmt)
    except ValueError as exc:
        raise SelectionError("format", f"{prefix}{exc}") from None
    return Selection(categories=cats, types=kinds, application=application or "", format=chosen)


class Feed:
    """Selects and renders events handed to it in log order, for one subscription."""

    def __init__(self, selection: Selection, read_stream: ReadStream) -> None:
        self.selection = selection
        self._read_stream = read_stream
        # stream id → its events seen so far, from version 0, for the streams a
        # rendering or an application filter needed (least recently used dropped first).
        self._streams: OrderedDict[str, list[RecordedEvent]] = OrderedDict()

    async def documents(self, recorded: RecordedEvent) -> list[Document]:
        """What `recorded` is sent as: [] when the subscription does not select it."""
        selection = self.selection
        if not selection.wants_type(recorded):
            self._remember(recorded)
            return []
        history: list[RecordedEvent] | None = None
        if needs_history(recorded, selection.format):
            history = await self._history(recorded)
        if selection.application:
            application = _own_application(recorded)
            if not application:
                # A deployment's or an analysis' first event names the application.
                if history is None:
                    history = await self._history(recorded)
                application = _own_application(history[0]) if history else ""
            if application != selection.application:
                self._remember(recorded)
                return []
        documents = render(recorded, selection.format, history or ())
        self._remember(recorded)
        return documents

    async def _history(self, recorded: RecordedEvent) -> list[RecordedEvent]:
        """The events of `recorded`'s stream before it."""
        kept = self._streams.get(recorded.stream_id)
        if kept is None or len(kept) != recorded.stream_version:
            kept = (
                await self._read_stream(recorded.stream_id, recorded.stream_version)
                if recorded.stream_version > 0
                else []
            )
            self._streams[recorded.stream_id] = kept
        self._streams.move_to_end(recorded.stream_id)
        while len(self._streams) > _KEPT_STREAMS:
            self._streams.popitem(last=False)
        return list(kept)

    def _remember(self, recorded: RecordedEvent) -> None:
        kept = self._streams.get(recorded.stream_id)
        if kept is not None and len(kept) == recorded.stream_version:
            kept.append(recorded)
        elif kept is None and recorded.stream_version == 0:
            self._streams[recorded.stream_id] = [recorded]
            while len(self._streams) > _KEPT_STREAMS:
                self._streams.popitem(last=False)


def _own_application(recorded: RecordedEvent) -> str:
    """The `application_id` the event names itself ("" if none)."""
    value = getattr(recorded.event, "application_id", "")
    return value if isinstance(value, str) else ""
