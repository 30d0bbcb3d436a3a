"""The Prometheus provider against a real Prometheus scraping kubesim: samples, no data,
errors, basic auth."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import yaml
from nats.aio.client import Client as NatsClient

from kubesim import ImageRule, KubeSim
from services.analysis.decider import Due
from services.analysis.leases import Previous
from services.analysis.service import AnalysisService, AnalysisSetup
from shared.analysis.checks import CheckPlan
from shared.analysis.providers import PrometheusProvider, ProviderError, Series
from shared.config.control import AnalysisProvider, AnalysisProviderConfig
from shared.eventlog import EventStore
from shared.events import vocabulary
from shared.events.catalog import AnalysisCheck
from shared.git import GitCache
from shared.stagelog import StageLogs
from shared.subjects import Subjects
from shared.testing import wait_until
from slipway_sandbox._process import free_port
from slipway_sandbox.prometheus import PrometheusServer
from tests.support.analysis import (
    LOOPBACK_EGRESS,
    PROMETHEUS_PASSWORD,
    PROMETHEUS_USER,
    prometheus_for,
    providers,
)

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web, pipecd.dev/variant: canary}
spec:
  containers: [{name: web, image: "ghcr.io/acme/web:bad"}]
"""


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1, rules=[ImageRule("*:bad", error_rate=0.5)]) as sim:
        yield sim


@pytest.fixture
async def prometheus(sim: KubeSim, tmp_path: Path) -> AsyncIterator[PrometheusServer]:
    async with prometheus_for(sim, tmp_path / "prom", basic_auth=True) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _provider(
    prometheus: PrometheusServer, session: aiohttp.ClientSession, tmp_path: Path, password: str
) -> PrometheusProvider:
    (tmp_path / "user").write_text(PROMETHEUS_USER)
    (tmp_path / "password").write_text(password)
    config = AnalysisProviderConfig(
        address=prometheus.url,
        username_file=str(tmp_path / "user"),
        password_file=str(tmp_path / "password"),
    )
    return PrometheusProvider.from_config(
        AnalysisProvider(name="prom", type="PROMETHEUS", config=config), session
    )


async def test_query_range_returns_the_scraped_samples_as_sent(
    sim: KubeSim,
    prometheus: PrometheusServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A pod's labels (variant included) reach Prometheus; `query_range` with basic auth
    returns its error ratio as Prometheus' text values; a query matching nothing is empty."""
    async with (
        aiohttp.ClientSession() as admin,
        admin.post(
            f"{sim.url}/api/v1/namespaces",
            json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        ) as response,
    ):
        assert response.status in (201, 409)
    async with session.post(
        f"{sim.url}/api/v1/namespaces/shop/pods", json=yaml.safe_load(POD)
    ) as response:
        assert response.status == 201, await response.text()
    provider = _provider(prometheus, session, tmp_path, PROMETHEUS_PASSWORD)
    query = (
        'sum(rate(http_requests_total{pipecd_dev_variant="canary",status="500"}[5s]))'
        ' / sum(rate(http_requests_total{pipecd_dev_variant="canary"}[5s]))'
    )

    async def samples() -> Series | None:
        now = time.time()
        series = await provider.query_range(query, start=now - 3, end=now, step=1, timeout_s=10)
        return series if series.values else None

    series: Series = await wait_until(samples, within_s=30, what="samples of the canary pod")
    assert len(series.values) == len(series.timestamps)
    assert all(0.2 < float(v) < 0.8 for v in series.values), series.values
    now = time.time()
    empty = await provider.query_range(
        'http_requests_total{app="nothing"}', start=now - 3, end=now, step=1, timeout_s=10
    )
    assert empty == Series((), ())


async def test_errors_say_what_went_wrong(
    prometheus: PrometheusServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A bad query, a wrong password and an unreachable server are `ProviderError`s whose
    text says which (they end up in the event and the stage log)."""
    provider = _provider(prometheus, session, tmp_path, PROMETHEUS_PASSWORD)
    now = time.time()
    with pytest.raises(ProviderError, match=r"HTTP 400: bad_data: .*parse error"):
        await provider.query_range("rate(", start=now - 3, end=now, step=1, timeout_s=10)
    wrong = _provider(prometheus, session, tmp_path, "wrong")
    with pytest.raises(ProviderError, match="HTTP 401"):
        await wrong.query_range("up", start=now - 3, end=now, step=1, timeout_s=10)
    gone = PrometheusProvider("gone", f"http://127.0.0.1:{free_port()}", session)
    with pytest.raises(ProviderError, match="Prometheus gone unreachable"):
        await gone.query_range("up", start=now - 3, end=now, step=1, timeout_s=10)


async def test_previous_queries_the_previous_analysis_window_at_the_same_offset(
    prometheus: PrometheusServer,
    store: EventStore,
    nc: NatsClient,
    subjects: Subjects,
    tmp_path: Path,
) -> None:
    """PREVIOUS: the experiment is this deployment's window (variant primary), the control the
    same query over the window at the same offset from the previous analysis' start."""
    check = AnalysisCheck(
        key="metrics[0]",
        kind=vocabulary.CheckKind.METRICS,
        strategy=vocabulary.CheckStrategy.PREVIOUS,
        interval_s=60.0,
        provider="prom",
        query='up{job="{{ .App.Name }}", v="{{ .Variant.Name }}", ns="{{ .K8s.Namespace }}"}',
        timeout_s=10.0,
    )
    service = AnalysisService(
        store=store,
        stage_logs=StageLogs(store.pool, nc, subjects),
        git=GitCache("/nonexistent"),
        repositories={},
        providers=providers(prometheus, tmp_path),
        holder="a1",
        egress=LOOPBACK_EGRESS,
    )
    setup = AnalysisSetup(
        plans={}, skipped=[], judge="sequential", duration_s=300, app_name="web", namespace="shop"
    )
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    before = now - timedelta(days=1)
    try:
        measured = await service.measure(
            setup,
            CheckPlan(check),
            Due("metrics[0]", 2, 120.0, False),
            started_at=now,
            previous=Previous("a0", before),
            analysis_id="a1",
        )
    finally:
        await service.close()
    experiment, control = measured
    assert (experiment.role, experiment.variant, control.role, control.variant) == (
        "experiment",
        "primary",
        "control",
        "previous",
    )
    assert experiment.query == control.query == 'up{job="web", v="primary", ns="shop"}'
    assert (experiment.window_start, experiment.window_end) == (
        now.timestamp() + 60,
        now.timestamp() + 120,
    )
    assert (control.window_start, control.window_end) == (
        before.timestamp() + 60,
        before.timestamp() + 120,
    )
    assert experiment.error == control.error == ""  # Prometheus answered (with no data)
