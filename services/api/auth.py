"""The seam where authentication and authorisation plug in; none is enforced yet.

Every route is declared with the `Access` it needs (`routes.Route`), and
`create_app(auth=…)` takes one aiohttp middleware that runs after error
handling and before every handler. The API-key middleware of a later issue
will:

1. read the key from the request and look up its `Principal` (or answer 401);
2. compare `principal.role` with `required_access(request)`, denying any route
   whose access is unknown (deny by default) with 403;
3. store the principal with `request[PRINCIPAL] = principal`.

Handlers never check roles themselves; they only ask `actor_of(request)` who
is acting, which goes into each event's metadata (`actor`) and into
`SyncRequested.commander`. Without an auth middleware the actor is unknown
(None) and every route is open: run the API on loopback, as the sandbox does.
"""

from __future__ import annotations

import enum

import msgspec
from aiohttp import web

__all__ = ["PRINCIPAL", "ROUTE_ACCESS", "Access", "Principal", "actor_of", "required_access"]


class Access(enum.Enum):
    """What a route needs of its caller."""

    PUBLIC = "public"  # the API document: readable without a key
    READ = "read"
    WRITE = "write"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: set by the auth middleware once it has checked the credentials."""

    name: str
    role: str


PRINCIPAL = web.RequestKey("principal", Principal)
ROUTE_ACCESS = web.AppKey("route_access", dict[str, Access])
"""The access each named route needs (filled in as routes are added)."""


def required_access(request: web.Request) -> Access | None:
    """The access the matched route needs; None for a route nobody declared (deny it)."""
    name = request.match_info.route.name
    return None if name is None else request.app[ROUTE_ACCESS].get(name)


def actor_of(request: web.Request) -> str | None:
    """The authenticated caller's name, or None when no auth middleware is installed."""
    principal = request.get(PRINCIPAL)
    return principal.name if principal is not None else None
