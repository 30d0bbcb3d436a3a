"""The health endpoint of a service: liveness, readiness and Prometheus metrics over HTTP.

- `GET /healthz` answers 200 while the event loop runs (liveness: a hung loop
  cannot answer, which is what an orchestrator's liveness probe detects).
- `GET /readyz` answers 200 only while the service is running (started, not
  stopping) and every registered readiness check passes; the JSON body lists
  each check with its detail, and 503 otherwise. Checks run concurrently,
  each under a timeout, so one hung dependency cannot hang the probe.
- `GET /metrics` is the Prometheus text format of a `CollectorRegistry`:
  process, platform and GC metrics, plus whatever the service registers
  (`Counter("…", "…", registry=health.registry)`).

It binds 127.0.0.1 by default; port 0 picks a free port, which is then
available as `port` and logged.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Self

import msgspec
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from shared.http import HttpServer
from shared.logs import get_logger

__all__ = ["CheckResult", "HealthServer", "ReadinessCheck", "new_registry"]

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]
"""An async callable answering (ok, detail), e.g. (True, "SELECT 1 answered")."""

log = get_logger(__name__)

_LIFECYCLE: Final = "lifecycle"


class CheckResult(msgspec.Struct, frozen=True):
    """One readiness check's result: ok, and a detail for a person."""

    ok: bool
    detail: str


class _Phase(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


def new_registry() -> CollectorRegistry:
    """A registry holding the process, platform and garbage-collector metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class HealthServer(HttpServer):
    """A tiny aiohttp server for probes and scrapes; use `async with` or `start`/`stop`."""

    what = "health"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        registry: CollectorRegistry | None = None,
        check_timeout_s: float = 2.0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.registry = registry if registry is not None else new_registry()
        self.check_timeout_s = check_timeout_s
        self._checks: dict[str, ReadinessCheck] = {}
        self._phase = _Phase.STARTING

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Make readiness depend on `check` as well."""
        if name == _LIFECYCLE or name in self._checks:
            raise ValueError(f"a readiness check named {name!r} already exists")
        self._checks[name] = check

    def mark_running(self) -> None:
        """Start-up is complete: readiness now depends on the checks alone."""
        if self._phase is _Phase.STARTING:
            self._phase = _Phase.RUNNING

    def mark_stopping(self) -> None:
        """Shutdown has begun: report not ready, so no new traffic is routed here."""
        self._phase = _Phase.STOPPING

    async def readiness(self) -> tuple[bool, dict[str, CheckResult]]:
        """Run every check now; (all passed, result of each)."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_check(self._checks[n]) for n in names))
        report = {_LIFECYCLE: CheckResult(self._phase is _Phase.RUNNING, self._phase.value)}
        report.update(zip(names, results, strict=True))
        return all(result.ok for result in report.values()), report

    async def _run_check(self, check: ReadinessCheck) -> CheckResult:
        try:
            async with asyncio.timeout(self.check_timeout_s):
                ok, detail = await check()
        except TimeoutError:
            return CheckResult(False, f"no answer within {self.check_timeout_s:g} s")
        # A failing check is an answer for the probe, not a crash of the server.
        except Exception as exc:  # noqa: BLE001
            return CheckResult(False, f"{type(exc).__name__}: {exc}")
        return CheckResult(bool(ok), detail)

    async def start(self) -> None:
        """Serve /healthz, /readyz and /metrics."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        # Probes arrive every few seconds: access lines would drown the service's own.
        await self._serve(app)
        log.info("health_server_started", host=self.host, port=self.port)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, report = await self.readiness()
        body = msgspec.json.encode({"ready": ready, "checks": report})
        return web.Response(
            body=body, status=200 if ready else 503, content_type="application/json"
        )

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry),
            content_type=None,
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )
