"""A real HTTP proxy in front of a server, holding the requests to one path until told.

A slow or hanging upstream as the client sees it (an OIDC provider's token endpoint
taking its time), controlled by the test: while the proxy is `hold()`-ing, requests to
the held path are received, counted (`arrived`) and kept waiting; `release()` lets them
through, and they are forwarded as they came. Every other request passes at once.

The `Host` header is forwarded as the client sent it, so an upstream that builds URLs from
it (the local OIDC provider names its issuer and endpoints so) names the proxy: a client
configured with the proxy's URL goes through the proxy for everything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
from aiohttp import web

__all__ = ["HeldProxy", "held_proxy"]

_NOT_FORWARDED: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)
"""Hop-by-hop headers, and the body's framing (each side frames its own)."""


class HeldProxy:
    """The running proxy: its URL, the gate on the held path and what arrived there."""

    def __init__(self, upstream: str, path: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.path = path
        self.url = ""
        self.arrived = 0
        """Requests to the held path received so far (held or not)."""
        self._open = asyncio.Event()
        self._open.set()
        self._http: aiohttp.ClientSession | None = None

    def hold(self) -> None:
        """From now on, requests to the held path wait for `release`."""
        self._open.clear()

    def release(self) -> None:
        """The held requests (and later ones) go on to the upstream."""
        self._open.set()

    async def forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        body = await request.read()
        if request.path == self.path:
            self.arrived += 1
            await self._open.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        async with self._http.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as reply:
            answer = await reply.read()
            back = {k: v for k, v in reply.headers.items() if k.lower() not in _NOT_FORWARDED}
            return web.Response(status=reply.status, body=answer, headers=back)


@contextlib.asynccontextmanager
async def held_proxy(upstream: str, path: str) -> AsyncIterator[HeldProxy]:
    """The proxy on a free port of 127.0.0.1 until the block ends (held requests released)."""
    proxy = HeldProxy(upstream, path)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    proxy.url = f"http://{host}:{port}"
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        proxy._http = http
        try:
            yield proxy
        finally:
            proxy.release()
            await runner.cleanup()
