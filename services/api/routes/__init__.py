"""The API's routes, one module per resource; each route declares its access and its contract.

A resource module exposes `ROUTES`, a tuple of `Route`s; add a resource by
adding a module and one line to `_MODULES`. A large resource keeps its table
in its module and its handlers in rooms beside it (`deployments.py` holds the
commands; `deployment_reads.py`, `deployment_logs.py`, `deployment_lookup.py`).
A `Route` says everything the OpenAPI document says of it — summary, tag, the
Structs of its query, body and answers, the error statuses it may answer —
and `openapi.py` generates the document from the route table alone: a route added here is documented
with no other edit. Route names are the OpenAPI operation ids, and
`auth.ROUTE_ACCESS` maps each to its `Access`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from services.api.auth import ROUTE_ACCESS, Access

__all__ = ["API_PREFIX", "Answer", "Route", "add_routes", "all_routes"]

API_PREFIX: Final = "/api/v1"

_MODULES: Final = (
    "services.api.routes.applications",
    "services.api.routes.apikeys",
    "services.api.routes.chains",
    "services.api.routes.deployments",
    "services.api.routes.docs",
    "services.api.routes.events",
    "services.api.routes.event_stream",
    "services.api.routes.insights",
    "services.api.routes.live_resources",
    "services.api.routes.plan_preview",
    "services.api.routes.secrets",
    "services.api.routes.unregistered",
    "services.api.routes.watched_events",
)


@dataclass(frozen=True)
class Answer:
    """One success answer of a route, as the OpenAPI document shows it."""

    status: int
    description: str
    schema: type | None
    """The Struct answered as JSON; None: a JSON object the document does not describe."""
    event_stream: bool = False
    """Also answers `text/event-stream` (server-sent events)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Response headers it sets, with what each says."""


@dataclass(frozen=True)
class Route:
    """One API route: method, path, handler, the role it needs, and its OpenAPI summary."""

    method: str
    path: str
    """Below `API_PREFIX`, in aiohttp's syntax (`/applications/{application}`)."""
    handler: Handler
    name: str
    """The OpenAPI operationId."""
    access: Access
    summary: str
    tag: str
    answers: tuple[Answer, ...]
    """Its success answers, the usual one first."""
    description: str | None = None
    errors: tuple[int, ...] = ()
    """Error statuses it may answer besides 401 and 403 (and 413 with a body)."""
    query: type | None = None
    """A Struct whose fields are its query parameters (`schemas/`), if it takes any."""
    body: type | None = None
    """The Struct its JSON body decodes into, if it takes one."""
    body_required: bool = True


def all_routes() -> tuple[Route, ...]:
    """Every route of every route module, in the table's order."""
    routes: list[Route] = []
    for module_name in _MODULES:
        routes.extend(importlib.import_module(module_name).ROUTES)
    return tuple(routes)


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Register `routes` on `app`, with the role each needs."""
    access = app.setdefault(ROUTE_ACCESS, {})
    for route in routes:
        app.router.add_route(route.method, API_PREFIX + route.path, route.handler, name=route.name)
        access[route.name] = route.access
