"""The analysis service under test: a real Prometheus scraping kubesim, analysis replicas,
an app whose pipeline analyses its canary (built on the executor's `Harness`), and a local
endpoint for its HTTP checks (the `health_endpoint` fixture is in tests/e2e/conftest.py).

Test-framework light: `need_prometheus()` skips a test when the binary is
missing, and fails it on CI (`CI=true`), where `make test` installs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from aiohttp import web

from kubesim import KubeSim
from services.analysis.service import CONSUMER_NAME, HANDLES, AnalysisService
from shared.config.control import AnalysisProvider, AnalysisProviderConfig
from shared.consumer import EventConsumer
from shared.egress import EgressPolicy
from shared.events.catalog import AnalysisConcluded, AnalysisStarted
from shared.git import GitCache
from shared.stagelog import StageLogs
from shared.testing import wait_until
from slipway_sandbox._process import free_port
from slipway_sandbox.prometheus import PrometheusServer, prometheus_binary
from tests.support.executor import APP_PATH, CONFIG, DEPLOYMENT, Harness

PROMETHEUS_USER = "slipway"
PROMETHEUS_PASSWORD = "test"
# bcrypt of "test" (Prometheus' web config takes only bcrypt hashes; the docs' example).
PROMETHEUS_HASH = "$2b$12$hNf2lSsxfm0.i4a.1kVpSOVyBCfIB51VRjgBUyv6kdnyTlgWj81Ay"


def need_prometheus() -> None:
    """Skip without Debian's prometheus; fail on CI, where it must be installed."""
    if prometheus_binary() is not None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("prometheus is required on CI (Debian: apt-get install prometheus)")
    pytest.skip("prometheus is not installed (Debian: apt-get install prometheus)")


@contextlib.asynccontextmanager
async def prometheus_for(
    sim: KubeSim, data_dir: Path, *, basic_auth: bool = False
) -> AsyncIterator[PrometheusServer]:
    """A Prometheus scraping every pod of `sim` every second, for the block."""
    need_prometheus()
    users = {PROMETHEUS_USER: PROMETHEUS_HASH} if basic_auth else None
    server = PrometheusServer(data_dir, sd_url=f"{sim.url}/kubesim/targets", basic_auth_users=users)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


ERROR_RATE_TEMPLATE = """\
apiVersion: pipecd.dev/v1beta1
kind: AnalysisTemplate
spec:
  metrics:
    error-rate:
      strategy: THRESHOLD
      provider: prom
      interval: 3s
      failureLimit: 0
      skipOnNoData: true
      expected:
        max: 0.1
      query: >-
        sum(rate(http_requests_total{namespace="{{ .K8s.Namespace }}",
        app="{{ .AppCustomArgs.app }}", pipecd_dev_variant="{{ .Variant.Name }}",
        status="500"}[5s]))
        /
        sum(rate(http_requests_total{namespace="{{ .K8s.Namespace }}",
        app="{{ .AppCustomArgs.app }}", pipecd_dev_variant="{{ .Variant.Name }}"}[5s]))
"""

ERROR_RATIO_QUERY = (
    'sum(rate(http_requests_total{app="web", pipecd_dev_variant="{{ .Variant.Name }}", '
    'status="500"}[5s])) / sum(rate(http_requests_total{app="web", '
    'pipecd_dev_variant="{{ .Variant.Name }}"}[5s]))'
)

LATENCY_QUERY = (
    'sum(rate(http_request_duration_seconds_sum{app="web", pipecd_dev_variant='
    '"{{ .Variant.Name }}"}[5s])) / sum(rate(http_request_duration_seconds_count{app="web", '
    'pipecd_dev_variant="{{ .Variant.Name }}"}[5s]))'
)


def analysis_pipeline(
    *,
    duration: str = "9s",
    comparison: bool = False,
    http_url: str = "",
    judge: str = "sequential",
    metrics: list[dict[str, Any]] | None = None,
) -> str:
    """`extra` for the app config: canary → ANALYSIS (the error-rate template, and optionally
    a CANARY_PRIMARY latency comparison and an HTTP check; or only `metrics`) → primary →
    clean."""
    analysis: dict[str, Any] = {
        "duration": duration,
        "judge": judge,
        "metrics": metrics
        if metrics is not None
        else [{"template": {"name": "error-rate", "appArgs": {"app": "web"}}}],
    }
    if comparison:
        analysis["metrics"].append(
            {
                "strategy": "CANARY_PRIMARY",
                "provider": "prom",
                "interval": "3s",
                "deviation": "HIGH",
                "skipOnNoData": True,
                "query": LATENCY_QUERY,
            }
        )
    if http_url:
        analysis["https"] = [{"url": http_url, "interval": "3s", "failureLimit": 1}]
    stages = [
        {"name": "K8S_CANARY_ROLLOUT", "id": "canary", "with": {"replicas": "50%"}},
        {"name": "ANALYSIS", "id": "analysis", "with": analysis},
        {"name": "K8S_PRIMARY_ROLLOUT", "id": "primary"},
        {"name": "K8S_CANARY_CLEAN", "id": "clean"},
    ]
    text = yaml.safe_dump({"pipeline": {"stages": stages}}, sort_keys=False)
    return "".join(f"  {line}\n" for line in text.splitlines())


LOOPBACK_EGRESS: Final = EgressPolicy.from_entries(["127.0.0.0/8", "::1/128"])
"""The tests' Prometheus and HTTP targets listen on loopback: allowed explicitly (opt-in)."""


def template_files() -> dict[str, str | bytes | None]:
    return {".pipe/analysis-template.yaml": ERROR_RATE_TEMPLATE}


def providers(prometheus: PrometheusServer, tmp: Path) -> dict[str, AnalysisProvider]:
    """The control config's `analysisProviders`: `prom`, with basic auth from files if the
    server asks for it."""
    config = AnalysisProviderConfig(address=prometheus.url)
    if prometheus.basic_auth_users:
        user, password = tmp / "prom-user", tmp / "prom-password"
        user.write_text(PROMETHEUS_USER + "\n")
        password.write_text(PROMETHEUS_PASSWORD + "\n")
        config = AnalysisProviderConfig(
            address=prometheus.url, username_file=str(user), password_file=str(password)
        )
    return {"prom": AnalysisProvider(name="prom", type="PROMETHEUS", config=config)}


def analysis_replica(
    harness: Harness, name: str, providers: dict[str, AnalysisProvider], **options: Any
) -> tuple[AnalysisService, EventConsumer]:
    settings: dict[str, Any] = {"lease_ttl_s": 3.0, "poll_s": 0.2, "claim_interval_s": 0.3}
    service = AnalysisService(
        store=harness.store,
        stage_logs=StageLogs(harness.store.pool, harness.nc, harness.subjects),
        git=GitCache(harness.cache / f"analysis-{name}", share_checkouts=True),
        repositories={"config": harness.work.url},
        providers=providers,
        holder=name,
        egress=LOOPBACK_EGRESS,
        **(settings | options),
    )
    consumer = harness.consumer(
        CONSUMER_NAME,
        service.handle,
        after_commit=service.after_commit,
        handles=HANDLES,
    )
    return service, consumer


def app_files_at(tag: str, extra: str) -> dict[str, str | bytes | None]:
    """The app (config with `extra`, manifests of image `tag`) and the `.pipe/` template."""
    return {
        f"{APP_PATH}/.pipe.yaml": CONFIG.format(extra=extra),
        f"{APP_PATH}/manifests.yaml": DEPLOYMENT.format(tag=tag, replicas=2),
        **template_files(),
    }


async def analysis_events(harness: Harness, analysis_id: str) -> list[Any]:
    return [e.event for e in await harness.store.read_stream(f"analysis-{analysis_id}")]


async def wait_started(harness: Harness, analysis_id: str) -> AnalysisStarted:
    async def probe() -> AnalysisStarted | None:
        events = await analysis_events(harness, analysis_id)
        return next((e for e in events if isinstance(e, AnalysisStarted)), None)

    started: AnalysisStarted = await wait_until(probe, within_s=30, what="AnalysisStarted")
    return started


async def concluded(harness: Harness, analysis_id: str) -> list[AnalysisConcluded]:
    return [
        e for e in await analysis_events(harness, analysis_id) if isinstance(e, AnalysisConcluded)
    ]


class SlowPrometheus:
    """A Prometheus-compatible `query_range` endpoint (a local aiohttp server) that answers
    its first `slow_calls` queries only after `delay_s` (longer than a check's timeout), and
    the rest at once with one series of zeros: a provider that times out, for a while or
    for good."""

    def __init__(self, *, slow_calls: int, delay_s: float = 5.0) -> None:
        self.slow_calls = slow_calls
        self.delay_s = delay_s
        self.calls = 0
        self.url = ""
        self._release = asyncio.Event()  # set at teardown: no handler outlives the test
        self._runner: web.AppRunner | None = None

    async def _query_range(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.calls <= self.slow_calls:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.delay_s)
        end = float(request.query["end"])
        values = [[end - 1, "0"], [end, "0"]]
        body = {
            "status": "success",
            "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]},
        }
        return web.json_response(body)

    async def __aenter__(self) -> SlowPrometheus:
        app = web.Application()
        app.router.add_get("/api/v1/query_range", self._query_range)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def provider(self, name: str) -> dict[str, AnalysisProvider]:
        """The control config's `analysisProviders` entry for this server."""
        config = AnalysisProviderConfig(address=self.url)
        return {name: AnalysisProvider(name=name, type="PROMETHEUS", config=config)}


async def stage_log(harness: Harness, deployment_id: str, stage_id: str) -> list[str]:
    """The stage's log lines, as a person reads them."""
    logs = StageLogs(harness.store.pool, None, harness.subjects)
    return [line.message for line in await logs.read(deployment_id, stage_id)]
