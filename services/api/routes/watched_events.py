"""`/event-watcher/events`: register an event for the event watcher, and list what each did.

Registering is PipeCD's `pipectl event register` (`slipway event register`):
the gitwatcher's event watcher writes the value into every matching
`eventWatcher`'s files and pushes (`services/gitwatcher/eventwatcher.py`).
The list is read from the log: each registration with the outcome per
repository and the commit it produced.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from services.api.auth import Access, actor_of
from services.api.deps import deps
from services.api.errors import ErrorReply
from services.api.routes import Answer, Route
from services.api.routes.applications import metadata_of
from services.api.schemas import (
    EventOutcomeResource,
    ListWatchedEventsQuery,
    RegisteredEvent,
    RegisterEventRequest,
    WatchedEventList,
    WatchedEventResource,
)
from services.api.wire import json_response, query_int, query_str, read_body
from shared.gitevents import InvalidEvent, WatchedEvent, list_events, register_event

__all__ = ["ROUTES"]


def _resource(event: WatchedEvent) -> WatchedEventResource:
    return WatchedEventResource(
        event_id=event.event_id,
        name=event.name,
        data=event.data,
        labels=event.labels,
        registered_at=event.registered_at,
        registrar=event.registrar,
        newest=event.newest,
        handled=[
            EventOutcomeResource(
                repository_id=h.repository_id,
                status=h.status,
                description=h.description,
                commit_hash=h.commit_hash,
                branch=h.branch,
                files=list(h.files),
                watchers=list(h.watchers),
                pull_request_url=h.pull_request_url,
                handled_at=h.handled_at,
            )
            for h in event.handled
        ],
    )


async def register(request: web.Request) -> web.Response:
    body = await read_body(request, RegisterEventRequest)
    try:
        event_id = await register_event(
            deps(request).store,
            name=body.name,
            data=body.data,
            labels=body.labels,
            contexts=body.contexts,
            commit_hash=body.commit_hash,
            registrar=actor_of(request) or "",
            metadata=metadata_of(request),
        )
    except InvalidEvent as exc:
        raise ErrorReply(400, "invalid_request", str(exc), field=exc.field) from exc
    return json_response(RegisteredEvent(event_id=event_id), status=201)


async def list_(request: web.Request) -> web.Response:
    name = query_str(request, "name", max_length=128) or ""
    limit = query_int(request, "limit", ge=1, le=1000) or 100
    events = await list_events(deps(request).store, name=name, limit=limit)
    return json_response(WatchedEventList(items=[_resource(e) for e in events]))


ROUTES: Final = (
    Route(
        "POST",
        "/event-watcher/events",
        register,
        "registerEvent",
        Access.WRITE,
        summary="Register an event for the event watcher (read-write)",
        tag="event-watcher",
        answers=(Answer(201, "Recorded; the event watcher writes it shortly.", RegisteredEvent),),
        errors=(400, 503),
        description="PipeCD's `pipectl event register`: every `eventWatcher` (application "
        "configs, `.pipe/` EventWatcher files) whose matcher has this name and exactly these "
        "labels gets the value written into its files, committed and pushed. A later "
        "registration of the same name and labels wins; an older one is never written over it.",
        body=RegisterEventRequest,
    ),
    Route(
        "GET",
        "/event-watcher/events",
        list_,
        "listWatchedEvents",
        Access.READ,
        summary="Registered events and what each changed, newest first",
        tag="event-watcher",
        answers=(Answer(200, "The events.", WatchedEventList),),
        errors=(400, 503),
        query=ListWatchedEventsQuery,
    ),
)
