"""The health server: liveness, readiness from checks and lifecycle, Prometheus metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import structlog
from prometheus_client import Counter, Gauge

from shared.health import HealthServer


@pytest.fixture
async def health() -> AsyncIterator[HealthServer]:
    async with HealthServer(check_timeout_s=0.2) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body


async def passing() -> tuple[bool, str]:
    return True, "fine"


async def failing() -> tuple[bool, str]:
    return False, "replica lag 30 s"


async def raising() -> tuple[bool, str]:
    raise ConnectionRefusedError("connection refused")


async def hanging() -> tuple[bool, str]:
    await asyncio.Event().wait()
    return True, "never"


async def test_free_port_is_bound_exposed_and_logged() -> None:
    """Port 0 binds a free port on 127.0.0.1, exposed as `port` and logged."""
    with structlog.testing.capture_logs() as captured:
        async with HealthServer() as server:
            assert server.port > 0
            assert server.url == f"http://127.0.0.1:{server.port}"
    [started] = [e for e in captured if e["event"] == "health_server_started"]
    assert (started["host"], started["port"]) == ("127.0.0.1", server.port)


async def test_liveness_answers_while_the_loop_runs(
    health: HealthServer, http: aiohttp.ClientSession
) -> None:
    """/healthz is 200 whatever the readiness."""
    health.add_check("db", failing)
    assert await get(http, health.url + "/healthz") == (200, {"status": "alive"})


async def test_not_ready_until_started(health: HealthServer, http: aiohttp.ClientSession) -> None:
    """/readyz is 503 while starting even if every check passes, 200 once running."""
    health.add_check("db", passing)
    status, body = await get(http, health.url + "/readyz")
    assert status == 503
    assert body["checks"]["lifecycle"] == {"ok": False, "detail": "starting"}
    health.mark_running()
    status, body = await get(http, health.url + "/readyz")
    assert status == 200
    assert body == {
        "ready": True,
        "checks": {
            "lifecycle": {"ok": True, "detail": "running"},
            "db": {"ok": True, "detail": "fine"},
        },
    }


async def test_each_failing_check_is_listed(
    health: HealthServer, http: aiohttp.ClientSession
) -> None:
    """A false, raising or hanging check makes /readyz 503, each with its own detail."""
    for name, check in [("ok", passing), ("lag", failing), ("nats", raising), ("kube", hanging)]:
        health.add_check(name, check)
    health.mark_running()
    status, body = await get(http, health.url + "/readyz")
    assert status == 503
    assert body["ready"] is False
    assert body["checks"] == {
        "lifecycle": {"ok": True, "detail": "running"},
        "ok": {"ok": True, "detail": "fine"},
        "lag": {"ok": False, "detail": "replica lag 30 s"},
        "nats": {"ok": False, "detail": "ConnectionRefusedError: connection refused"},
        "kube": {"ok": False, "detail": "no answer within 0.2 s"},
    }


async def test_not_ready_while_stopping(health: HealthServer, http: aiohttp.ClientSession) -> None:
    """Once shutdown begins, /readyz is 503 so traffic moves elsewhere."""
    health.add_check("db", passing)
    health.mark_running()
    health.mark_stopping()
    status, body = await get(http, health.url + "/readyz")
    assert status == 503
    assert body["checks"]["lifecycle"] == {"ok": False, "detail": "stopping"}


async def test_check_names_are_unique(health: HealthServer) -> None:
    """Registering two checks under one name (or the reserved `lifecycle`) is refused."""
    health.add_check("db", passing)
    with pytest.raises(ValueError, match="db"):
        health.add_check("db", passing)
    with pytest.raises(ValueError, match="lifecycle"):
        health.add_check("lifecycle", passing)


async def test_metrics_include_process_and_service_metrics(
    health: HealthServer, http: aiohttp.ClientSession
) -> None:
    """/metrics is Prometheus text with process metrics and the service's own."""
    handled = Counter(
        "slipway_messages_handled", "Messages handled", ["outcome"], registry=health.registry
    )
    handled.labels(outcome="acked").inc(3)
    Gauge("slipway_inflight", "Messages in flight", registry=health.registry).set(2)
    async with http.get(health.url + "/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    assert "process_cpu_seconds_total " in text
    assert "python_info{" in text
    assert 'slipway_messages_handled_total{outcome="acked"} 3.0' in text
    assert "slipway_inflight 2.0" in text


async def test_stop_releases_the_port() -> None:
    """After stop, the port is free for the next server."""
    first = HealthServer()
    await first.start()
    port = first.port
    await first.stop()
    async with HealthServer(port=port) as second:
        assert second.port == port
