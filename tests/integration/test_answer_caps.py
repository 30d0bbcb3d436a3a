"""Answers from servers Slipway does not control are read up to a cap, never whole.

A real local HTTP server answers every request with a body that never ends: the
Prometheus provider fails with a clear error, an HTTP check keeps its first bytes, the
notifier quotes the start of a receiver's error page — each having read a bounded
amount (the server counts what it could send before the client hung up).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from services.notifier.delivery import DeliveryWorker
from services.notifier.notify.retry import RetryPolicy
from services.notifier.outbox import Claim
from services.notifier.targets import Target
from shared.analysis.providers import (
    BODY_LIMIT,
    PROMETHEUS_BODY_LIMIT,
    HttpChecker,
    PrometheusProvider,
    ProviderError,
)
from shared.events import vocabulary
from shared.events.catalog import NotificationScheduled
from shared.http import RunningServer, serve
from slipway_client import MAX_EVENT_LINE_BYTES, ApiClient, ApiError

CHUNK = b"x" * 65536
# Far more than any cap (and what a reader may hold plus socket buffers): read whole, it shows.
ENDLESS_BYTES = 256 * 1024 * 1024


class EndlessServer:
    """Answers `status` with a body of ENDLESS_BYTES; counts what it got to send."""

    def __init__(self) -> None:
        self.sent = 0
        self.status = 200

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=self.status)
        response.content_type = "application/json"
        await response.prepare(request)
        try:
            while self.sent < ENDLESS_BYTES:
                await response.write(CHUNK)
                self.sent += len(CHUNK)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client hung up: what we wanted
        return response


@pytest.fixture
async def endless() -> AsyncIterator[tuple[EndlessServer, RunningServer]]:
    server = EndlessServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    running = await serve(app, "127.0.0.1", 0)
    try:
        yield server, running
    finally:
        await running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _read_at_most(server: EndlessServer, limit: int) -> None:
    # What the server got out before the client closed: the cap plus socket buffers.
    assert server.sent < limit + 32 * 1024 * 1024, server.sent


async def test_a_prometheus_answer_over_the_cap_is_a_clear_error(
    endless: tuple[EndlessServer, RunningServer], session: aiohttp.ClientSession
) -> None:
    server, running = endless
    provider = PrometheusProvider("prom", running.url, session)
    with pytest.raises(ProviderError, match="answered more than 8 MiB; narrow the query"):
        await provider.query_range("up", start=0, end=60, step=1, timeout_s=60)
    _read_at_most(server, PROMETHEUS_BODY_LIMIT)


async def test_an_http_check_reads_only_the_start_of_the_body(
    endless: tuple[EndlessServer, RunningServer], session: aiohttp.ClientSession
) -> None:
    server, running = endless
    answer = await HttpChecker(session).request("GET", f"{running.url}/health", timeout_s=60)
    assert (answer.status, len(answer.body)) == (200, BODY_LIMIT)
    _read_at_most(server, BODY_LIMIT)


async def test_a_receivers_error_page_is_quoted_not_read_whole(
    endless: tuple[EndlessServer, RunningServer], session: aiohttp.ClientSession
) -> None:
    server, running = endless
    server.status = 500
    worker = DeliveryWorker(outbox=None, targets={}, policy=RetryPolicy())  # type: ignore[arg-type]
    worker._session = session  # what `run` sets; only `_post` is under test
    scheduled = NotificationScheduled(
        notification_id="n1",
        receiver="hook",
        receiver_kind=vocabulary.ReceiverKind.WEBHOOK,
        notification_type="DEPLOYMENT_FAILED",
        source_event_id="e1",
        source_stream_id="deployment-d1",
        body="{}",
    )
    target = Target(name="hook", kind="webhook", url=f"{running.url}/hook")
    attempt = await worker._post(target, Claim(scheduled, attempt=1, token=1))
    assert attempt.status == 500 and attempt.error.startswith("HTTP 500: xxx")
    assert len(attempt.error) < 400
    _read_at_most(server, 4096)


async def test_the_cli_reads_an_api_answer_only_up_to_its_cap(
    endless: tuple[EndlessServer, RunningServer],
) -> None:
    """The CLI's client too: an answer over its cap is a clear error, never read whole."""
    server, running = endless
    client = ApiClient(running.url, timeout_s=30, max_answer_bytes=1024 * 1024)
    with pytest.raises(ApiError, match="answered more than 1048576 bytes"):
        await asyncio.to_thread(client.get_deployment, "d1")  # the server runs in this loop
    _read_at_most(server, 1024 * 1024)


async def test_the_cli_refuses_an_endless_event_line(
    endless: tuple[EndlessServer, RunningServer],
) -> None:
    server, running = endless
    with pytest.raises(ApiError, match="event line over"):
        await asyncio.to_thread(lambda: list(ApiClient(running.url).follow_logs("d1")))
    _read_at_most(server, MAX_EVENT_LINE_BYTES)
