"""An analysis target that answers to hurt: a Prometheus-compatible server on loopback whose
answers are valid HTTP but hostile JSON. Each must end as a `ProviderError` the tick records,
never as an exception that escapes the provider."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from shared.analysis.providers import PrometheusProvider, ProviderError

NESTED = "[" * 100_000 + "]" * 100_000


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(text=NESTED, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/query_range", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_json_nested_beyond_the_stack_is_a_provider_error(hostile: str) -> None:
    async with aiohttp.ClientSession() as session:
        provider = PrometheusProvider("hostile", hostile, session)
        now = time.time()
        with pytest.raises(ProviderError, match="not JSON"):
            await provider.query_range("up", start=now - 3, end=now, step=1, timeout_s=10)
