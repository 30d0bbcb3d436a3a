"""Authentication and authorisation: API keys, roles, deny by default.

Every route is declared with the `Access` it needs (`routes.Route`);
`api_key_auth(store)` is the middleware `create_app` installs unless told
otherwise. For each request it:

1. lets `Access.PUBLIC` routes through (only the API document and the event contract);
2. reads `Authorization: Bearer <key>` and looks the key up (`KeyCache`,
   over `shared.apikeys.authenticate`): a missing, malformed, unknown or
   revoked key answers 401;
3. compares the key's role with the route's access — `READ` needs
   read-only, `WRITE` read-write, `ADMIN` admin — and answers 403 when it is
   too low, or when the route's access is unknown (deny by default);
4. stores the principal with `request[PRINCIPAL] = principal`.

The web console's routes (`services/api/console`) go through the same steps;
only their credentials differ: a signed session cookie naming the key
(`SESSION_ROUTES`, `SESSION_KEY_OF`) instead of the `Authorization` header,
which those routes never read (and API routes never read the cookie, so a
cookie cannot ride a cross-site request into the API).

Handlers never check roles themselves; they only ask `actor_of(request)` who
is acting (the key's name), which goes into each event's metadata (`actor`),
into `SyncRequested.commander`, and is the approver of `WAIT_APPROVAL`
stages; skipping such a stage also asks `is_admin(request)` (an admin may
skip an approval it is not listed for).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from services.api.errors import ErrorReply
from shared.apikeys import (
    ApiKey,
    Role,
    authenticate,
    fold_key,
    role_allows,
    secret_sha256,
)
from shared.eventlog import EventStore
from shared.events.streams import apikey_stream

__all__ = [
    "KEY_CACHE",
    "PRINCIPAL",
    "ROUTE_ACCESS",
    "SESSION_KEY_OF",
    "SESSION_ROUTES",
    "Access",
    "KeyCache",
    "Principal",
    "actor_of",
    "api_key_auth",
    "is_admin",
    "key_still_live",
    "required_access",
]

DEFAULT_CACHE_TTL_S: Final = 2.0
"""How long a key's check is reused: a revocation takes effect within this."""
_CACHE_MAX: Final = 10_000


class Access(enum.Enum):
    """What a route needs of its caller."""

    PUBLIC = "public"  # the API document and the event contract: readable without a key
    READ = "read"  # role read-only or above
    WRITE = "write"  # role read-write or above: commands and registrations
    ADMIN = "admin"  # role admin: keys, deletions


_ROLE_NEEDED: Final[dict[Access, Role]] = {
    Access.READ: "read-only",
    Access.WRITE: "read-write",
    Access.ADMIN: "admin",
}


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: set by the auth middleware once it has checked the credentials."""

    name: str
    role: str
    key_id: str = ""


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


def is_admin(request: web.Request) -> bool:
    """Whether the caller's key is admin: for the few rules that depend on more than the route
    (an admin may skip an approval it is not listed for). False without an auth middleware."""
    principal = request.get(PRINCIPAL)
    return principal is not None and role_allows(principal.role, "admin")


class KeyCache:
    """Checked keys by the hash of their secret, each for `ttl_s`.

    Without it every request would read the key's stream; with it a revoked key
    keeps working for at most `ttl_s` (the brief allows "a few seconds"), in
    every API replica independently, with no invalidation messages to lose.
    Unknown keys are cached too, so a client retrying a bad key costs nothing.
    """

    def __init__(self, store: EventStore, *, ttl_s: float = DEFAULT_CACHE_TTL_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}
        self._live: dict[str, tuple[float, bool]] = {}
        self._by_id: dict[str, tuple[float, ApiKey | None]] = {}

    async def live(self, key_id: str) -> bool:
        """Whether the key is still unrevoked (re-read at most once per `ttl_s`)."""
        now = time.monotonic()
        cached = self._live.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        key, _ = fold_key(await self.store.read_stream(apikey_stream(key_id)))
        alive = key is not None and not key.revoked
        if len(self._live) >= _CACHE_MAX:
            self._live.clear()
        self._live[key_id] = (now + self.ttl_s, alive)
        return alive

    async def by_id(self, key_id: str) -> ApiKey | None:
        """The live (unrevoked) key with this id, re-read at most once per `ttl_s`: a console
        session names its key by id and learns of a revocation as a bearer would."""
        now = time.monotonic()
        cached = self._by_id.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        key, _ = fold_key(await self.store.read_stream(apikey_stream(key_id)))
        live = key if key is not None and not key.revoked else None
        if len(self._by_id) >= _CACHE_MAX:
            self._by_id.clear()
        self._by_id[key_id] = (now + self.ttl_s, live)
        return live

    async def lookup(self, secret: str) -> ApiKey | None:
        """The live key with this secret (found by its SHA-256), cached for `ttl_s`, or None."""
        digest = secret_sha256(secret)
        now = time.monotonic()
        cached = self._entries.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = await authenticate(self.store, secret)
        if len(self._entries) >= _CACHE_MAX:
            # Crude but bounded: a flood of made-up keys cannot grow memory.
            self._entries.clear()
        self._entries[digest] = (now + self.ttl_s, key)
        return key


KEY_CACHE = web.AppKey("key_cache", KeyCache)
"""The auth middleware's cache, for requests that outlive one check (`key_still_live`)."""

SessionKeyOf = Callable[[web.Request, KeyCache], Awaitable[ApiKey | None]]
SESSION_ROUTES = web.AppKey("session_routes", set[str])
"""The names of the routes whose credentials are a console session, not a bearer key."""
SESSION_KEY_OF: Final[web.AppKey[SessionKeyOf]] = web.AppKey("session_key_of")
"""Reads a request's session cookie into its live key (None: no valid session)."""


def _unauthorized(message: str) -> ErrorReply:
    return ErrorReply(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def key_still_live(request: web.Request) -> bool:
    """Whether the request's key is still unrevoked, for a request that lasts (a log follow):
    it learns of a revocation within the cache's TTL, as a new request would."""
    principal = request.get(PRINCIPAL)
    cache = request.app.get(KEY_CACHE)
    if principal is None or cache is None or not principal.key_id:
        return True  # no API keys in use (a test's own auth)
    return await cache.live(principal.key_id)


def api_key_auth(
    store: EventStore, *, cache_ttl_s: float = DEFAULT_CACHE_TTL_S, cache: KeyCache | None = None
) -> Middleware:
    """The middleware that demands an API key of sufficient role on every non-public route."""
    cache = cache or KeyCache(store, ttl_s=cache_ttl_s)

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        access = required_access(request)
        if access is Access.PUBLIC:
            return await handler(request)
        name = request.match_info.route.name
        if name is not None and name in request.app.get(SESSION_ROUTES, ()):
            key = await request.app[SESSION_KEY_OF](request, cache)
            if key is None:
                raise ErrorReply(401, "unauthorized", "sign in to the console first")
        else:
            secret = _bearer(request)
            if secret is None:
                raise _unauthorized("this endpoint needs an API key: Authorization: Bearer <key>")
            key = await cache.lookup(secret)
            if key is None:
                raise _unauthorized("the API key is unknown, malformed or revoked")
        request[PRINCIPAL] = Principal(name=key.name, role=key.role, key_id=key.key_id)
        if request.match_info.http_exception is not None:
            return await handler(request)  # no such route: let aiohttp's 404/405 answer
        needed = _ROLE_NEEDED.get(access) if access is not None else None
        if needed is None:
            raise ErrorReply(403, "forbidden", "this route declares no access; denied by default")
        if not role_allows(key.role, needed):
            raise ErrorReply(
                403,
                "forbidden",
                f"the key {key.name!r} has the role {key.role}; this needs {needed} or above",
            )
        return await handler(request)

    return auth
