"""`/applications/{application}/live`: the application's live objects, as drift last saw them.

The API has no cluster access: the drift service records the objects (and their
controllers' ReplicaSets and Pods, each with its health) on
`liveresources-<application_id>` when they change, and this answers the newest
record. The console's application page draws the same record as a tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from aiohttp import web

from services.api import reads
from services.api.auth import Access
from services.api.decider import TargetNotFound
from services.api.deps import deps
from services.api.routes import Answer, Route
from services.api.schemas import ApplicationLiveResources
from services.api.wire import json_response
from shared.db import unavailable_on_disconnect
from shared.eventlog import NO_STREAM, EventStore
from shared.events.catalog import ApplicationLiveResourcesObserved
from shared.events.streams import live_resources_stream

__all__ = ["ROUTES", "LiveResources", "newest_live_resources"]


@dataclass(frozen=True)
class LiveResources:
    """The newest recorded live objects of an application and when they were recorded."""

    observed: ApplicationLiveResourcesObserved
    at: datetime


async def newest_live_resources(store: EventStore, application_id: str) -> LiveResources | None:
    """The newest `ApplicationLiveResourcesObserved` of the application (two small reads:
    the stream's version, then that one event), or None before drift recorded one."""
    stream = live_resources_stream(application_id)
    async with unavailable_on_disconnect("read the live resources"):
        version = await store.stream_version(stream)
        if version == NO_STREAM:
            return None
        newest = await store.read_stream(stream, from_version=version, limit=1)
    if not newest or not isinstance(newest[0].event, ApplicationLiveResourcesObserved):
        return None
    return LiveResources(newest[0].event, newest[0].recorded_at)


async def get(request: web.Request) -> web.Response:
    api = deps(request)
    ref = request.match_info["application"]
    app = await reads.get_application(api.pool, ref)
    if app is None:
        raise TargetNotFound(f"no application with the id or name {ref!r}")
    found = await newest_live_resources(api.store, app.application_id)
    return json_response(
        ApplicationLiveResources(
            application_id=app.application_id,
            observed_at=found.at if found else None,
            resources=list(found.observed.resources) if found else [],
            truncated=found.observed.truncated if found else 0,
        )
    )


ROUTES: Final = (
    Route(
        "GET",
        "/applications/{application}/live",
        get,
        "getApplicationLiveResources",
        Access.READ,
        summary="The application's live resources with their health",
        tag="applications",
        answers=(Answer(200, "As drift last recorded them.", ApplicationLiveResources),),
        errors=(400, 404, 503),
        description="The objects labelled for the application and what their controllers "
        "made (ReplicaSets, Pods, Jobs), each with its uid, owners' uids, health "
        "(HEALTHY, PROGRESSING, UNHEALTHY, UNKNOWN), a short reason and creation time; no "
        "data, annotations or env. Recorded by the drift service on stream "
        "`liveresources-<application_id>` when they change (each round otherwise adds "
        "nothing), at most 500 objects (`truncated` counts the rest). `observed_at` is "
        "null before the first record.",
    ),
)
