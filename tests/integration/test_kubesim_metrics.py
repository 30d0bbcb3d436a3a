"""Every simulated pod serves Prometheus metrics shaped by its image's rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubesim import ImageRule, KubeSim
from kubesim.testing import eventually

RULES = [
    ImageRule("acme/web:bad", error_rate=0.3, latency_ms=50, requests_per_second=4000),
    ImageRule("acme/web:good", latency_ms=50, requests_per_second=4000),
    ImageRule("acme/web:never", never_ready=True, requests_per_second=4000),
]


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.05, rules=RULES, seed=7) as sim:
        yield sim


@pytest.fixture
async def http(sim: KubeSim) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sim.url) as session:
        yield session


async def _deploy(http: aiohttp.ClientSession, name: str, image: str, variant: str) -> None:
    labels = {"app": name, "pipecd.dev/variant": variant}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{name}-{variant}"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }
    async with http.post("/apis/apps/v1/namespaces/default/deployments", json=body) as response:
        assert response.status == 201, await response.text()


async def _target(http: aiohttp.ClientSession, variant: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        async with http.get("/kubesim/targets") as response:
            groups: list[dict[str, Any]] = await response.json()
        return next((g for g in groups if g["labels"].get("pipecd_dev_variant") == variant), None)

    return await eventually(find, message=f"a {variant} target")


async def _scrape(target: dict[str, Any]) -> dict[str, float]:
    """Samples by name and sorted labels, e.g. `http_requests_total{status=500}`."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{target['targets'][0]}/metrics") as response,
    ):
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def _http(samples: dict[str, float], status: str) -> float:
    return samples[f"http_requests_total{{method=GET,status={status}}}"]


async def _scrape_until(target: dict[str, Any], total: int) -> dict[str, float]:
    async def enough() -> dict[str, float] | None:
        samples = await _scrape(target)
        return samples if _http(samples, "200") + _http(samples, "500") >= total else None

    return await eventually(enough, message=f"{total} requests")


async def test_targets_use_prometheus_http_sd_format(http: aiohttp.ClientSession) -> None:
    """/kubesim/targets lists each pod's loopback address with its identifying labels."""
    await _deploy(http, "web", "acme/web:good", "primary")
    target = await _target(http, "primary")
    host, port = target["targets"][0].split(":")
    assert host == "127.0.0.1" and int(port) > 0
    labels = target["labels"]
    assert labels["namespace"] == "default"
    assert labels["pod"].startswith("web-primary-")
    assert (labels["app"], labels["job"], labels["image"]) == ("web", "web", "acme/web:good")


async def test_error_ratio_is_close_to_the_configured_rate(http: aiohttp.ClientSession) -> None:
    """An image with error_rate 0.3 fails about 30% of requests: HTTP 500 and gRPC Internal."""
    await _deploy(http, "web", "acme/web:bad", "canary")
    samples = await _scrape_until(await _target(http, "canary"), 3000)
    ok, errors = _http(samples, "200"), _http(samples, "500")
    assert errors / (ok + errors) == pytest.approx(0.3, abs=0.03)
    grpc = {
        key.split("grpc_code=")[1].split(",")[0]: value
        for key, value in samples.items()
        if key.startswith("grpc_server_handled_total{")
    }
    assert grpc == {"OK": ok, "Internal": errors}


async def test_latency_histogram_is_centred_on_the_configured_median(
    http: aiohttp.ClientSession,
) -> None:
    """About half the requests finish within latency_ms, nearly all within twice that."""
    await _deploy(http, "web", "acme/web:good", "primary")
    samples = await _scrape_until(await _target(http, "primary"), 3000)
    count = samples["http_request_duration_seconds_count{}"]
    within = samples["http_request_duration_seconds_bucket{le=0.05}"] / count
    assert within == pytest.approx(0.5, abs=0.08)
    assert samples["http_request_duration_seconds_bucket{le=0.1}"] / count > 0.97
    assert samples["http_request_duration_seconds_sum{}"] / count == pytest.approx(0.052, abs=0.01)


async def test_image_rules_changed_at_run_time_apply_to_running_pods(
    http: aiohttp.ClientSession,
) -> None:
    """PUT /kubesim/images turns a healthy image bad: every later request fails."""
    await _deploy(http, "web", "acme/web:good", "primary")
    target = await _target(http, "primary")
    await _scrape_until(target, 100)
    rules = {"images": [{"image": "acme/web:good", "error_rate": 1.0, "requests_per_second": 4000}]}
    async with http.put("/kubesim/images", json=rules) as response:
        assert response.status == 200
        assert (await response.json())["images"][0]["error_rate"] == 1.0
    before = await _scrape(target)
    after = await _scrape_until(target, int(_http(before, "200") + _http(before, "500")) + 500)
    assert _http(after, "200") == _http(before, "200")
    assert _http(after, "500") >= _http(before, "500") + 500


async def test_unready_pods_get_no_traffic_and_proxy_serves_metrics(
    http: aiohttp.ClientSession, sim: KubeSim
) -> None:
    """A never-ready pod's counters stay at zero; the pods/proxy path serves the same text."""
    await _deploy(http, "web", "acme/web:never", "canary")
    target = await _target(http, "canary")
    await sim.settle()
    samples = await _scrape(target)
    assert _http(samples, "200") == _http(samples, "500") == 0
    pod = target["labels"]["pod"]
    async with http.get(f"/api/v1/namespaces/default/pods/{pod}/proxy/metrics") as response:
        assert response.status == 200
        assert "http_request_duration_seconds_bucket" in await response.text()
