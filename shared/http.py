"""Serving an aiohttp Application on (host, port): bind, start, learn the port, stop.

`serve(app, host, port)` starts one now; `HttpServer` is the base of a server
configured first and started later (the API, the webhook endpoint, health).
Port 0 picks a free port. The socket is bound here rather than by aiohttp,
because that is how the port it picked becomes known. No access log: a
server that wants request lines writes its own canonical ones.
"""

from __future__ import annotations

import socket

from aiohttp import web

from shared.errors import SlipwayError

__all__ = ["BodyTooLarge", "HttpServer", "RunningServer", "read_capped", "serve"]


class BodyTooLarge(SlipwayError):
    """A request body is larger than its endpoint takes (answer 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The request's body, or `BodyTooLarge` once it passes `limit` bytes.

    A declared `Content-Length` over the limit is refused before anything is
    read; otherwise the body is read in pieces and at most `limit + 1` bytes
    are ever held, whatever the sender claims or streams (chunked bodies too).
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    while True:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)


class RunningServer:
    """An Application served on `host`:`port` until `stop()`; both stay known after it."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self._runner = runner
        self._stopped = False
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """The server's base URL (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the grace), close; once."""
        if not self._stopped:
            await self._runner.cleanup()
            self._stopped = True


async def serve(
    app: web.Application, host: str, port: int, *, grace_s: float = 1.0
) -> RunningServer:
    """Start serving `app` on (host, port); requests in flight get `grace_s` when it stops."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace_s)
    await runner.setup()
    try:
        sock = _bind(host, port)
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    return RunningServer(runner, host, int(sock.getsockname()[1]))


class HttpServer:
    """A server of one Application on (host, port), from `start()` until `stop()`.

    A subclass builds its Application in its own `start()` and hands it to `_serve`.
    """

    what = "HTTP"
    """Names the server in errors ("the health server has not been started")."""

    def __init__(self, *, host: str, port: int, grace_s: float = 1.0) -> None:
        self.host = host
        self.requested_port = port
        self.grace_s = grace_s
        self._running: RunningServer | None = None

    @property
    def port(self) -> int:
        """The port actually bound (known once started)."""
        return self._started().port

    @property
    def url(self) -> str:
        """The running server's base URL."""
        return self._started().url

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the grace), close."""
        if self._running is not None:
            await self._running.stop()

    async def _serve(self, app: web.Application) -> None:
        self._running = await serve(app, self.host, self.requested_port, grace_s=self.grace_s)

    def _started(self) -> RunningServer:
        if self._running is None:
            raise RuntimeError(f"the {self.what} server has not been started")
        return self._running


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on (host, port), non-blocking for the event loop."""
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
