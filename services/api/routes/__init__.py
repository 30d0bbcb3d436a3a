"""The API's routes, one module per resource; each declares the access it needs.

A resource module exposes `ROUTES`, a tuple of `Route`s; add a resource by
adding a module and one line to `_MODULES`. Route names are the OpenAPI
operation ids, and `auth.ROUTE_ACCESS` maps each to its `Access`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from services.api.auth import ROUTE_ACCESS, Access

__all__ = ["API_PREFIX", "Route", "add_routes", "all_routes"]

API_PREFIX: Final = "/api/v1"

_MODULES: Final = (
    "services.api.routes.applications",
    "services.api.routes.apikeys",
    "services.api.routes.deployments",
    "services.api.routes.docs",
    "services.api.routes.events",
    "services.api.routes.event_stream",
    "services.api.routes.plan_preview",
)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    """Below `API_PREFIX`, in aiohttp's syntax (`/applications/{application}`)."""
    handler: Handler
    name: str
    """The OpenAPI operationId."""
    access: Access


def all_routes() -> tuple[Route, ...]:
    routes: list[Route] = []
    for module_name in _MODULES:
        routes.extend(importlib.import_module(module_name).ROUTES)
    return tuple(routes)


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    access = app.setdefault(ROUTE_ACCESS, {})
    for route in routes:
        app.router.add_route(route.method, API_PREFIX + route.path, route.handler, name=route.name)
        access[route.name] = route.access
