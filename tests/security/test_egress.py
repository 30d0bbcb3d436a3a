"""Analysis cannot be used to probe the network (DESIGN §14, "analysis targets").

HTTP checks and Prometheus queries go through the egress rule
(`spec.analysisEgress`): metadata, private, link-local and loopback targets
are refused before any connection, by name or by address, after redirects
too; and what a target answers is read and recorded only up to a cap.

No test here sends a packet beyond loopback: every refused target must be
refused before connecting, and a tripwire fails the test at once if a socket
ever tries to connect anywhere else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from nats.aio.client import Client as NatsClient

from services.analysis.decider import Due
from services.analysis.service import AnalysisService, AnalysisSetup
from shared.analysis.checks import CheckPlan
from shared.analysis.providers import (
    ERROR_LIMIT,
    EXCERPT_LIMIT,
    HttpChecker,
    PrometheusProvider,
    ProviderError,
)
from shared.config import load_control_config
from shared.egress import EgressPolicy, EgressRefused, guarded_session
from shared.errors import ConfigError
from shared.eventlog import EventStore
from shared.events import vocabulary
from shared.events.catalog import AnalysisCheck
from shared.git import GitCache
from shared.http import serve
from shared.stagelog import StageLogs
from shared.subjects import Subjects

STRICT = EgressPolicy()
LOOPBACK = EgressPolicy.from_entries(["127.0.0.0/8", "::1/128"])
METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


@pytest.fixture(autouse=True)
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Fails any socket connect to a non-loopback address (the refusal must come first)."""
    attempts: list[Any] = []
    loop_class = asyncio.SelectorEventLoop
    original = loop_class.sock_connect

    async def guarded(self: asyncio.AbstractEventLoop, sock: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else str(address)
        if not ipaddress.ip_address(host.split("%", 1)[0]).is_loopback:
            attempts.append(address)
            raise AssertionError(f"the test tried to connect to {address}")
        await original(self, sock, address)  # type: ignore[arg-type]

    monkeypatch.setattr(loop_class, "sock_connect", guarded)
    yield attempts
    assert attempts == [], f"connections attempted beyond loopback: {attempts}"


class Target:
    """A loopback HTTP server that counts what reaches it."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if request.path.startswith("/redirect"):
            raise web.HTTPFound(METADATA_URL)
        if request.path == "/big":
            # Far more than anyone should hold: 4 MB, the marker early, garbage after.
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"x" * 3000 + b"status: healthy" + b"y" * 1000)
            for _ in range(64):
                await response.write(b"z" * 65536)
            return response
        if request.path == "/noisy/api/v1/query_range":
            return web.json_response({"status": "error", "errorType": "x", "error": "e" * 100_000})
        if request.path == "/api/v1/query_range":
            pad = "p" * (9 * 1024 * 1024)
            return web.json_response(
                {"status": "success", "data": {"resultType": "vector", "result": []}, "pad": pad}
            )
        return web.Response(text="ok")


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    target = Target()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", target.handle)
    server = await serve(app, "127.0.0.1", 0)
    target.url = server.url
    try:
        yield target
    finally:
        await server.stop()


async def check(policy: EgressPolicy, url: str) -> str:
    """The error an HTTP check of `url` ends with under `policy` ("" if it was answered)."""
    async with guarded_session(policy) as session:
        try:
            await HttpChecker(session).request("GET", url, timeout_s=5)
        except ProviderError as exc:
            return str(exc)
    return ""


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (METADATA_URL, "169.254.169.254 is a cloud metadata address"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "metadata.google.internal is a cloud metadata address",
        ),
        ("http://[fd00:ec2::254]/latest/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://10.0.0.1/admin", "10.0.0.1 is private"),
        ("http://192.168.1.1/", "192.168.1.1 is private"),
        ("http://169.254.10.10/", "169.254.10.10 is link-local"),
        ("http://0.0.0.0/", "0.0.0.0 is unspecified"),
        ("http://[fc00::1]/", "fc00::1 is private"),
        ("http://[::ffff:10.0.0.1]/", "is private"),
    ],
)
async def test_non_public_targets_are_refused_before_connecting(url: str, reason: str) -> None:
    """Metadata, private, link-local and unspecified addresses: refused, with the reason."""
    error = await check(STRICT, url)
    assert reason in error and "spec.analysisEgress.allow" in error, error


async def test_loopback_is_refused_unless_allowed_by_address_or_by_name(target: Target) -> None:
    """127.0.0.1 and a name resolving to loopback are refused; the local server sees nothing."""
    port = target.url.rsplit(":", 1)[1]
    error = await check(STRICT, f"{target.url}/secret")
    assert "127.0.0.1 is loopback" in error, error
    error = await check(STRICT, f"http://localhost:{port}/secret")
    assert "localhost (" in error and "is loopback" in error, error
    error = await check(STRICT, f"http://[::ffff:127.0.0.1]:{port}/secret")
    assert "is loopback" in error, error
    assert target.requests == []
    # Allowed explicitly (as the sandbox and the tests do), it is reached.
    assert await check(LOOPBACK, f"{target.url}/fine") == ""
    assert target.requests == ["/fine"]


async def test_a_redirect_to_a_refused_address_is_not_followed(target: Target) -> None:
    """An allowed target redirecting to the metadata service: never reached, by checks or
    Prometheus (which follows redirects, each through the same rule)."""
    async with guarded_session(LOOPBACK) as session:
        answer = await HttpChecker(session).request("GET", f"{target.url}/redirect", timeout_s=5)
        assert answer.status == 302  # an HTTP check judges the redirect itself
        prometheus = PrometheusProvider("prom", f"{target.url}/redirect", session)
        with pytest.raises(ProviderError, match=r"169\.254\.169\.254 is a cloud metadata address"):
            await prometheus.query_range("up", start=0, end=60, step=15, timeout_s=5)
    assert len(target.requests) == 2


def test_the_rule_itself() -> None:
    """Allow entries open networks and names; metadata needs an exact entry; public is open."""
    assert STRICT.refusal("example.com", "93.184.216.34") is None
    wide = EgressPolicy.from_entries(["10.0.0.0/8", "169.254.0.0/16", "prometheus"])
    assert wide.refusal("x", "10.1.2.3") is None
    assert wide.refusal("prometheus", "172.17.0.5") is None
    assert wide.refusal("x", "172.17.0.5") == "x (172.17.0.5) is private"
    assert wide.refusal("169.254.169.254", "169.254.169.254") == (
        "169.254.169.254 is a cloud metadata address"
    )
    assert wide.refusal("metadata.google.internal", "169.254.169.254") is not None
    exact = EgressPolicy.from_entries(["169.254.169.254"])
    assert exact.refusal("169.254.169.254", "169.254.169.254") is None
    with pytest.raises(EgressRefused, match="is loopback"):
        STRICT.check("a.example", ["93.184.216.34", "127.0.0.1"])  # every address is checked


def test_the_control_config_names_a_bad_allow_entry(tmp_path: Path) -> None:
    """`spec.analysisEgress.allow` entries are CIDRs, addresses or host names; else the field."""
    path = tmp_path / "slipway.yaml"
    base = "apiVersion: slipway.dev/v1\nkind: Slipway\nspec:\n  project: p\n"
    path.write_text(base + "  analysisEgress:\n    allow: [10.0.0.0/8, prometheus]\n")
    assert load_control_config(path).spec.analysis_egress.allow == ("10.0.0.0/8", "prometheus")
    path.write_text(base + "  analysisEgress:\n    allow: ['http://x/']\n")
    with pytest.raises(ConfigError, match=r"spec\.analysisEgress\.allow\[0\]"):
        load_control_config(path)


def _service(store: EventStore, nc: NatsClient, subjects: Subjects, **kw: Any) -> AnalysisService:
    return AnalysisService(
        store=store,
        stage_logs=StageLogs(store.pool, nc, subjects),
        git=GitCache("/nonexistent"),
        repositories={},
        providers={},
        holder="a1",
        **kw,
    )


async def _measure(service: AnalysisService, url: str, expected: str = "") -> Any:
    check = AnalysisCheck(
        key="https[0]",
        kind=vocabulary.CheckKind.HTTP,
        strategy=vocabulary.CheckStrategy.HTTP,
        interval_s=60.0,
        query=url,
        timeout_s=5.0,
        method="GET",
        expected_code=200,
        expected_response=expected,
    )
    setup = AnalysisSetup(
        plans={}, skipped=[], judge="sequential", duration_s=300, app_name="web", namespace="shop"
    )
    try:
        (measured,) = await service.measure(
            setup,
            CheckPlan(check),
            Due("https[0]", 1, 60.0, False),
            started_at=datetime(2026, 1, 2, 12, 0, tzinfo=UTC),
            previous=None,
            analysis_id="a1",
        )
    finally:
        await service.close()
    return measured


async def test_the_analysis_service_refuses_by_default_and_records_why(
    store: EventStore, nc: NatsClient, subjects: Subjects, target: Target
) -> None:
    """With no `analysisEgress`, an analysis' HTTP check of loopback is refused and recorded so."""
    measured = await _measure(_service(store, nc, subjects), f"{target.url}/x")
    assert measured.status_code == 0 and "127.0.0.1 is loopback" in measured.error
    assert target.requests == []
    measured = await _measure(_service(store, nc, subjects), METADATA_URL)
    assert "cloud metadata address" in measured.error


async def test_a_huge_answer_is_capped_and_only_an_excerpt_recorded(
    store: EventStore, nc: NatsClient, subjects: Subjects, target: Target
) -> None:
    """A 4 MB HTTP answer: a short excerpt (with the expected text) is recorded; a Prometheus
    answer over its cap is an error, not a memory hog."""
    service = _service(store, nc, subjects, egress=LOOPBACK)
    measured = await _measure(service, f"{target.url}/big", expected="status: healthy")
    (body,) = measured.values
    assert len(body) <= EXCERPT_LIMIT and "status: healthy" in body
    async with guarded_session(LOOPBACK) as session:
        prometheus = PrometheusProvider("prom", target.url, session)
        with pytest.raises(ProviderError, match="answered more than 8 MiB"):
            await prometheus.query_range("up", start=0, end=60, step=15, timeout_s=10)
        noisy = PrometheusProvider("prom", f"{target.url}/noisy", session)
        with pytest.raises(ProviderError) as raised:
            await noisy.query_range("up", start=0, end=60, step=15, timeout_s=10)
        assert len(str(raised.value)) <= ERROR_LIMIT
    assert json.dumps(measured.error) == '""'
