"""The end-to-end layer: several services together, or the seed's whole story.

A test belongs here when two or more services (in-process or as their own processes)
cooperate in it - the executor with the analysis service, the gitwatcher with the
notifier, `slipway up` - or when it follows a user through the product (the first-hour
tests). Fixtures here serve more than one end-to-end module; the servers are the root
conftest's, started lazily once per session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from slipway_sandbox._process import free_port


@pytest.fixture
async def health_endpoint() -> AsyncIterator[str]:
    """A local HTTP server answering 200 on /healthz (the HTTP check's target)."""
    app = web.Application()

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/healthz"
    await runner.cleanup()
