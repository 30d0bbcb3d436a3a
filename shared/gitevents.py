"""Events for the event watcher: registered (`slipway event register`), handled, listed.

An event is PipeCD's: a name, a value (`data`, say `registry/app:v1.2.3`) and
labels; the event watcher (the gitwatcher's `services.gitwatcher.eventwatcher`)
writes the value into the files every matching `eventWatcher` names. Each
(name, labels) pair has one stream, `eventkey-<digest>` (PipeCD's event key),
holding its registrations in the order the log accepted them and, after each,
what every repository's watcher did with it (`EventHandled`). So "is there a
newer value than this one" is one short read, and the log's order (not a
clock) decides which value is the newest.

Used by the API (`/api/v1/event-watcher/events`), the gitwatcher, and the CLI
(`slipway event list`, through the API).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Final

import asyncpg
import msgspec

from shared.db import unavailable_on_disconnect
from shared.errors import Rejected
from shared.eventlog import EventStore
from shared.eventlog.envelope import envelope
from shared.events.base import Metadata, NewEvent, RecordedEvent
from shared.events.catalog import EventHandled, EventRegistered
from shared.events.streams import event_key_stream
from shared.ids import new_event_id
from shared.labels import LABEL_RULE, MAX_LABELS, is_valid_label

__all__ = [
    "MAX_DATA_CHARS",
    "HandledEvent",
    "InvalidEvent",
    "WatchedEvent",
    "check_event",
    "fold_event_key",
    "list_events",
    "register_event",
]

MAX_NAME_CHARS: Final = 128
MAX_DATA_CHARS: Final = 4096
MAX_CONTEXTS: Final = 32
_NAME: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
# PipeCD's rule for a context key (pipectl's `--contexts`): it becomes a commit trailer.
_CONTEXT_KEY: Final = re.compile(r"[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*")
# Control characters (tab aside) would let a value break out of its line in a
# file or a commit message; no image tag or version holds one.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029]")
_COMMIT: Final = re.compile(r"[0-9a-f]{7,64}")

# The streams holding the newest $1 registrations (all with $1 NULL), read whole: the
# newest N registrations lie in at most N streams, those whose last registration is newest.
_LIST: Final = """
SELECT global_position, tx_id, stream_id, stream_version, event_id, event_type,
       schema_version, payload, metadata, recorded_at
FROM events WHERE stream_id IN (
  SELECT stream_id FROM events
  WHERE stream_id LIKE 'eventkey-%' AND event_type = 'event_registered'
  GROUP BY stream_id ORDER BY max(global_position) DESC LIMIT $1
)
ORDER BY global_position
"""


class InvalidEvent(Rejected):
    """A registration that breaks a rule; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class HandledEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What one repository's watcher did with a registration."""

    repository_id: str
    status: str
    description: str = ""
    commit_hash: str = ""
    branch: str = ""
    files: tuple[str, ...] = ()
    watchers: tuple[str, ...] = ()
    pull_request_url: str = ""
    handled_at: datetime


class WatchedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A registration as its stream tells it, with what each repository did with it."""

    event_id: str
    name: str
    data: str
    labels: dict[str, str]
    registered_at: datetime
    position: int
    """The registration's global position: the log's order is what "newer" means."""
    registrar: str = ""
    commit_hash: str = ""
    contexts: dict[str, str] = msgspec.field(default_factory=dict)
    newest: bool = True
    """No later registration of the same name and labels exists."""
    handled: tuple[HandledEvent, ...] = ()


def check_event(
    name: str,
    data: str,
    labels: Mapping[str, str],
    contexts: Mapping[str, str] | None = None,
    commit_hash: str = "",
) -> None:
    """Refuse what may not be registered (`InvalidEvent` naming the field).

    The value is untrusted: it will be written into files and commit messages,
    so it must be one line; the YAML writer quotes it as a scalar besides.
    """
    if not name or len(name) > MAX_NAME_CHARS or not _NAME.fullmatch(name):
        raise InvalidEvent(
            "name",
            f"expected 1 to {MAX_NAME_CHARS} letters, digits and ._- (starting and ending "
            f"with a letter or digit), got {name[:80]!r}",
        )
    if not data:
        raise InvalidEvent("data", "required: the value to write (an image, a version)")
    if len(data) > MAX_DATA_CHARS:
        raise InvalidEvent("data", f"at most {MAX_DATA_CHARS} characters, got {len(data)}")
    if _CONTROL.search(data):
        raise InvalidEvent("data", "must be one line without control characters")
    if len(labels) > MAX_LABELS:
        raise InvalidEvent("labels", LABEL_RULE)
    for key, value in labels.items():
        if not is_valid_label(key, value):
            raise InvalidEvent(f"labels.{key[:64]}", LABEL_RULE)
    contexts = contexts or {}
    if len(contexts) > MAX_CONTEXTS:
        raise InvalidEvent("contexts", f"at most {MAX_CONTEXTS}")
    for key, value in contexts.items():
        if not _CONTEXT_KEY.fullmatch(key) or len(key) > 64:
            raise InvalidEvent(
                f"contexts.{key[:64]}", "keys are letters and digits in dash-separated words"
            )
        if len(value) > 1024 or _CONTROL.search(value):
            raise InvalidEvent(f"contexts.{key}", "one line of at most 1024 characters")
    if commit_hash and not _COMMIT.fullmatch(commit_hash):
        raise InvalidEvent("commitHash", f"expected a hex commit hash, got {commit_hash[:80]!r}")


async def register_event(
    store: EventStore,
    *,
    name: str,
    data: str,
    labels: Mapping[str, str],
    contexts: Mapping[str, str] | None = None,
    commit_hash: str = "",
    registrar: str = "",
    metadata: Metadata | None = None,
) -> str:
    """Record a registration (after `check_event`); returns its event id."""
    check_event(name, data, labels, contexts, commit_hash)
    event_id: uuid.UUID = new_event_id()
    registered = EventRegistered(
        event_id=str(event_id),
        name=name,
        data=data,
        labels=tuple(sorted(labels.items())),
        contexts=tuple(sorted((contexts or {}).items())),
        commit_hash=commit_hash,
        registrar=registrar,
    )
    stream = event_key_stream(name, registered.labels)
    new = NewEvent(
        event=registered,
        event_id=event_id,
        metadata=metadata or envelope(actor=registrar or None),
    )
    # Registrations of one key need no decision, only an order: append at the end,
    # whatever else was appended meanwhile.
    async with unavailable_on_disconnect("register an event"):
        await store.append(stream, [new], expected_version=None)
    return str(event_id)


def fold_event_key(history: Iterable[RecordedEvent]) -> list[WatchedEvent]:
    """The registrations of one `eventkey-` stream, oldest first, each with its outcomes."""
    events: list[WatchedEvent] = []
    index: dict[str, int] = {}
    for recorded in history:
        match recorded.event:
            case EventRegistered() as registered:
                if events:
                    events[-1] = msgspec.structs.replace(events[-1], newest=False)
                index[registered.event_id] = len(events)
                events.append(
                    WatchedEvent(
                        event_id=registered.event_id,
                        name=registered.name,
                        data=registered.data,
                        labels=dict(registered.labels),
                        registered_at=recorded.recorded_at,
                        position=recorded.global_position,
                        registrar=registered.registrar,
                        commit_hash=registered.commit_hash,
                        contexts=dict(registered.contexts),
                    )
                )
            case EventHandled() as handled if handled.event_id in index:
                at = index[handled.event_id]
                outcome = HandledEvent(
                    repository_id=handled.repository_id,
                    status=handled.status,
                    description=handled.description,
                    commit_hash=handled.commit_hash,
                    branch=handled.branch,
                    files=handled.files,
                    watchers=handled.watchers,
                    pull_request_url=handled.pull_request_url,
                    handled_at=recorded.recorded_at,
                )
                events[at] = msgspec.structs.replace(
                    events[at], handled=(*events[at].handled, outcome)
                )
            case _:
                pass
    return events


async def list_events(store: EventStore, *, name: str = "", limit: int = 100) -> list[WatchedEvent]:
    """Registrations, newest first (of `name` only, if given), at most `limit`."""
    async with unavailable_on_disconnect("list events"):
        # A name is inside the payload, not the stream id: then every stream is read.
        rows: list[asyncpg.Record] = await store.pool.fetch(_LIST, None if name else limit)
    streams: dict[str, list[RecordedEvent]] = {}
    for row in rows:
        streams.setdefault(row["stream_id"], []).append(store.decode_row(row))
    events = [event for history in streams.values() for event in fold_event_key(history)]
    if name:
        events = [event for event in events if event.name == name]
    events.sort(key=lambda e: e.position, reverse=True)
    return events[:limit]
