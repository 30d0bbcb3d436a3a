"""The aiohttp Application of the API, built from its dependencies, and a server to run it.

`create_app(store=…, pool=…)` is all a test needs to serve the API in-process;
`__main__.py` wires the same factory to the service runtime. Middlewares run
in this order: request context (id, canonical log line) → errors → `auth`
(the seam of `auth.py`, empty until API keys arrive) → the handler.
"""

from __future__ import annotations

import socket
from typing import Final

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Middleware

from services.api.deps import DEPS, Deps
from services.api.errors import error_middleware
from services.api.middleware import request_middleware
from services.api.routes import add_routes, all_routes
from services.api.service import ApplicationCommands
from shared.eventlog import EventStore
from shared.logs import get_logger

__all__ = ["DEFAULT_READ_WAIT_S", "ApiServer", "create_app"]

log = get_logger(__name__)

DEFAULT_READ_WAIT_S: Final = 5.0
_MAX_BODY_BYTES: Final = 256 * 1024


def create_app(
    *,
    store: EventStore,
    pool: asyncpg.Pool,
    read_wait_s: float = DEFAULT_READ_WAIT_S,
    auth: Middleware | None = None,
) -> web.Application:
    """The API, reading and writing through `store` and `pool` (the same database)."""
    middlewares = [request_middleware, error_middleware, *([auth] if auth is not None else [])]
    app = web.Application(middlewares=middlewares, client_max_size=_MAX_BODY_BYTES)
    app[DEPS] = Deps(
        store=store, pool=pool, commands=ApplicationCommands(store), read_wait_s=read_wait_s
    )
    add_routes(app, all_routes())
    return app


class ApiServer:
    """Serves an Application on (host, port); port 0 picks a free one, known once started."""

    def __init__(
        self, app: web.Application, *, host: str = "127.0.0.1", port: int = 0, grace_s: float = 10.0
    ) -> None:
        self.host = host
        self.requested_port = port
        # Our own canonical line per request replaces aiohttp's access log.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace_s)
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the API server has not been started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await self._runner.setup()
        try:
            sock = _bind(self.host, self.requested_port)
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self._port = sock.getsockname()[1]
        log.info("api_server_started", url=self.url)

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the grace), close."""
        await self._runner.cleanup()


def _bind(host: str, port: int) -> socket.socket:
    # Binding the socket ourselves is how port 0 tells us which port it got.
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
