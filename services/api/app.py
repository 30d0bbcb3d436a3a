"""The aiohttp Application of the API, built from its dependencies, and a server to run it.

`create_app(store=…, pool=…)` is all a test needs to serve the API in-process;
`__main__.py` wires the same factory to the service runtime. Middlewares run
in this order: request context (id, canonical log line) → errors → `auth`
(API keys, `auth.py`) → the handler.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Middleware
from cryptography.hazmat.primitives.asymmetric import rsa
from nats.aio.client import Client as NatsClient

from services.api.auth import DEFAULT_CACHE_TTL_S, KEY_CACHE, KeyCache, api_key_auth
from services.api.console.assets import DEFAULT_ASSETS_DIR
from services.api.console.db_clock import DatabaseClock
from services.api.console.keyring import Keyring
from services.api.console.oidc import OidcLogin, OidcSettings
from services.api.console.oidc_sessions import OidcSessions
from services.api.console.pages import add_console_routes
from services.api.console.security import add_security_headers, console_middleware
from services.api.console.session_keys import DEFAULT_ROTATION_S, refresh_keys
from services.api.console.sessions import SessionCodec
from services.api.console.state import CONSOLE, Console
from services.api.deps import DEPS, Deps, PlanPreviewSource
from services.api.errors import error_middleware
from services.api.follow_hub import FOLLOW_HUB
from services.api.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_STREAMS_PER_KEY, StreamSlots
from services.api.log_tail import LOG_TAIL
from services.api.middleware import request_middleware
from services.api.routes import add_routes, all_routes
from services.api.routes.deployment_logs import follow_hub
from services.api.routes.event_stream import log_tail
from services.api.service import ApplicationCommands
from shared.eventlog import EventStore
from shared.http import HttpServer
from shared.logs import get_logger
from shared.subjects import Subjects

__all__ = ["DEFAULT_READ_WAIT_S", "ApiServer", "create_app"]

log = get_logger(__name__)

DEFAULT_READ_WAIT_S: Final = 5.0


def create_app(
    *,
    store: EventStore,
    pool: asyncpg.Pool,
    read_wait_s: float = DEFAULT_READ_WAIT_S,
    auth: Middleware | None = None,
    nc: NatsClient | None = None,
    subjects: Subjects | None = None,
    key_cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
    plan_preview: PlanPreviewSource | None = None,
    secret_public_key: rsa.RSAPublicKey | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_log_streams_per_key: int = DEFAULT_STREAMS_PER_KEY,
    console_session_key: bytes | None = None,
    console_key_rotation_s: float = DEFAULT_ROTATION_S,
    console_assets_dir: Path | None = None,
    trace_url_template: str = "",
    oidc: OidcSettings | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The API, reading and writing through `store` and `pool` (the same database).

    `auth` defaults to API keys (`auth.api_key_auth`): every route but the
    document needs a key. `nc` is for following live stage logs; without it a
    follow serves the stored lines, polling the table for new ones. A request
    body over `max_body_bytes` is refused (413) before more of it is read; a key
    may follow at most `max_log_streams_per_key` logs at once (429 beyond).

    The web console (`services/api/console`) is served under `/console`: its
    sessions are signed with `console_session_key`, or when None with the keys every
    replica shares in PostgreSQL (loaded before the first request, a new one every
    `console_key_rotation_s`), its npm assets read from `console_assets_dir`;
    with `oidc`, people may also sign in through that OpenID Connect provider. The
    console's times are the database's (`db_clock`); `clock`, this replica's, is only
    compared with it, to warn when it is off.
    """
    cache = KeyCache(store, ttl_s=key_cache_ttl_s)
    if auth is None:
        auth = api_key_auth(store, cache=cache)
    # The console's middleware sits above the error mapping: it turns errors into pages.
    middlewares = [request_middleware, console_middleware, error_middleware, auth]
    app = web.Application(middlewares=middlewares, client_max_size=max_body_bytes)
    app.on_response_prepare.append(add_security_headers)
    sessions = SessionCodec(
        Keyring.fixed(console_session_key) if console_session_key else Keyring()
    )
    console_clock = DatabaseClock(clock)
    if not console_session_key:
        app.cleanup_ctx.append(
            refresh_keys(pool, sessions, rotation_s=console_key_rotation_s, clock=console_clock)
        )
    login = OidcLogin(oidc) if oidc is not None else None
    app[CONSOLE] = Console(
        sessions=sessions,
        assets_dir=console_assets_dir or DEFAULT_ASSETS_DIR,
        trace_url_template=trace_url_template,
        oidc=login,
        oidc_sessions=(
            OidcSessions(pool, login, clock=console_clock) if login is not None else None
        ),
        clock=console_clock,
    )
    app[KEY_CACHE] = cache
    app[DEPS] = Deps(
        store=store,
        pool=pool,
        commands=ApplicationCommands(store),
        read_wait_s=read_wait_s,
        nc=nc,
        subjects=subjects or Subjects(),
        plan_preview=plan_preview,
        secret_public_key=secret_public_key,
        max_body_bytes=max_body_bytes,
        log_streams=StreamSlots(max_log_streams_per_key),
    )
    app[FOLLOW_HUB] = follow_hub(app[DEPS])
    app[LOG_TAIL] = log_tail(store)
    add_routes(app, all_routes())
    add_console_routes(app)
    return app


class ApiServer(HttpServer):
    """Serves an Application on (host, port); port 0 picks a free one, known once started."""

    what = "API"

    def __init__(
        self, app: web.Application, *, host: str = "127.0.0.1", port: int = 0, grace_s: float = 10.0
    ) -> None:
        super().__init__(host=host, port=port, grace_s=grace_s)
        self._app = app

    async def start(self) -> None:
        """Listen, then log the URL it serves on (`api_server_started`)."""
        # Our own canonical line per request replaces aiohttp's access log.
        await self._serve(self._app)
        log.info("api_server_started", url=self.url)
