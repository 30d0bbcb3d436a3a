"""The event watcher: events registered through the API and their outcomes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta


class RegisterEventRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """PipeCD's `pipectl event register`: a value for every `eventWatcher` matching the name and
    exactly these labels. The value is written into files as one scalar (never as YAML)."""

    name: Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]
    data: Annotated[str, Meta(min_length=1, max_length=4096, description="The value to write.")]
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    contexts: Annotated[
        dict[str, str], Meta(description="Written as trailers of the commit (PipeCD's contexts).")
    ] = msgspec.field(default_factory=dict)
    commit_hash: Annotated[
        str, Meta(pattern=r"^([0-9a-f]{7,64})?$", description="The commit that made the value.")
    ] = ""


class RegisteredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /event-watcher/events`: the id of the event registered."""

    event_id: str


class EventOutcomeResource(msgspec.Struct, frozen=True, kw_only=True):
    """What one repository's event watcher did: SUCCESS, NO_CHANGE, OUTDATED, FAILURE or
    NOT_WATCHED, with the commit it pushed."""

    repository_id: str
    status: str
    description: str
    commit_hash: str
    branch: str
    files: list[str]
    watchers: list[str]
    pull_request_url: str
    handled_at: datetime


class WatchedEventResource(msgspec.Struct, frozen=True, kw_only=True):
    """One registered event: its name, data, labels and what each repository did with it."""

    event_id: str
    name: str
    data: str
    labels: dict[str, str]
    registered_at: datetime
    registrar: str
    newest: bool
    handled: list[EventOutcomeResource]


class WatchedEventList(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /event-watcher/events`: registered events, newest first."""

    items: list[WatchedEventResource]


class ListWatchedEventsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The filters of `GET /event-watcher/events`."""

    name: Annotated[str | None, Meta(description="Only events of this name.")] = None
    limit: Annotated[int, Meta(ge=1, le=1000, description="At most this many, newest first.")] = 100
