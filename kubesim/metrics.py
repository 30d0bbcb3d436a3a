"""Per-pod Prometheus metrics: each simulated pod listens on its own loopback port.

A real Prometheus scrapes each pod as its own target, so every pod gets a
port on 127.0.0.1 serving `GET /metrics`:

- `http_requests_total{method, status="200"|"500"}` (counter)
- `grpc_server_handled_total{grpc_code="OK"|"Internal", grpc_service, grpc_method, grpc_type}`
- `http_request_duration_seconds` (histogram, Prometheus' default buckets)

A background generator makes each *ready* pod handle requests at its image
rule's rate (only ready pods get traffic, as behind a Service): each request
fails with the rule's `error_rate` and takes a log-normal latency around
`latency_ms`, drawn from one seeded random generator so runs repeat.
`targets()` is the list in Prometheus HTTP service-discovery format.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import math
import random
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from kubesim.rules import ImageRules

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
LATENCY_SIGMA = 0.3  # log-normal spread: p99 = median · e^(2.326·0.3) ≈ 2× median
TICK_S = 0.1
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class PodMetrics:
    """One pod's counters and its listening socket."""

    namespace: str
    name: str
    image: str
    labels: dict[str, str]
    port: int
    ready: bool = False
    ok: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    # Requests per latency bucket: `hits[n]` took more than BUCKETS[n-1], at most BUCKETS[n]
    # (the last: more than every bound). Kept apart, so a request costs one bisect, not a
    # pass over every bucket; `buckets` sums them up for the exposition.
    hits: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    carry: float = 0.0  # fractional requests owed from earlier ticks

    def record(self, error: bool, seconds: float) -> None:
        """Count one request and its latency into the counters and histogram buckets."""
        if error:
            self.errors += 1
        else:
            self.ok += 1
        self.latency_sum += seconds
        self.hits[bisect.bisect_left(BUCKETS, seconds)] += 1

    @property
    def buckets(self) -> list[int]:
        """Requests at most each bound of BUCKETS (the histogram's cumulative counts)."""
        return list(itertools.accumulate(self.hits[: len(BUCKETS)]))

    def target_labels(self) -> dict[str, str]:
        """Labels for service discovery: pod labels sanitised as Prometheus' labelmap does."""
        labels = {_label_name(k): v for k, v in self.labels.items()}
        labels.update(
            namespace=self.namespace,
            pod=self.name,
            image=self.image,
            job=self.labels.get("app") or self.labels.get("app.kubernetes.io/name") or self.name,
        )
        return labels


def _label_name(key: str) -> str:
    # `pipecd.dev/variant` → `pipecd_dev_variant`: Prometheus 2 rejects dots and slashes.
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


class _PodCollector(Collector):
    def __init__(self, pod: PodMetrics) -> None:
        self.pod = pod

    def collect(self) -> Iterator[Metric]:
        pod = self.pod
        http = CounterMetricFamily(
            "http_requests_total",
            "HTTP requests handled, by status code.",
            labels=["method", "status"],
        )
        http.add_metric(["GET", "200"], pod.ok)
        http.add_metric(["GET", "500"], pod.errors)
        yield http
        grpc = CounterMetricFamily(
            "grpc_server_handled_total",
            "RPCs completed on the server, by gRPC code.",
            labels=["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )
        for code, count in (("OK", pod.ok), ("Internal", pod.errors)):
            grpc.add_metric(["unary", "kubesim.Simulated", "Handle", code], count)
        yield grpc
        cumulative = [(str(b), c) for b, c in zip(BUCKETS, pod.buckets, strict=True)]
        cumulative.append(("+Inf", pod.ok + pod.errors))
        histogram = HistogramMetricFamily(
            "http_request_duration_seconds", "HTTP request latency.", labels=[]
        )
        histogram.add_metric([], [(_le(b), c) for b, c in cumulative], sum_value=pod.latency_sum)
        yield histogram


def _le(bound: str) -> str:
    return bound if bound == "+Inf" else repr(float(bound))


class MetricsHub:
    """Every pod's metrics endpoint and the traffic generator behind them."""

    def __init__(self, rules: ImageRules, *, seed: int = 0, host: str = "127.0.0.1") -> None:
        self.rules = rules
        self.host = host
        self._rng = random.Random(seed)  # noqa: S311 — repeatable traffic, not secrets
        self._pods: dict[str, PodMetrics] = {}
        self._sites: dict[str, web.SockSite] = {}
        self._by_port: dict[int, PodMetrics] = {}
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the scrape endpoint and the task that generates traffic for ready pods."""
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        app.router.add_get("/", self._serve)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._task = asyncio.create_task(self._generate(), name="kubesim-traffic")

    async def stop(self) -> None:
        """Stop the traffic task and the scrape endpoint."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._runner is not None:
            await self._runner.cleanup()
        self._sites.clear()
        self._pods.clear()
        self._by_port.clear()

    async def add_pod(
        self, uid: str, namespace: str, name: str, image: str, labels: dict[str, str]
    ) -> int:
        """Open the pod's metrics port; returns it."""
        assert self._runner is not None, "start() first"
        if uid in self._pods:
            return self._pods[uid].port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        port = int(sock.getsockname()[1])
        pod = PodMetrics(namespace, name, image, dict(labels), port)
        site = web.SockSite(self._runner, sock)
        self._pods[uid] = pod
        self._by_port[port] = pod
        self._sites[uid] = site
        await site.start()
        return port

    async def remove_pod(self, uid: str) -> None:
        """Stop serving a deleted pod's metrics and close its socket."""
        pod = self._pods.pop(uid, None)
        site = self._sites.pop(uid, None)
        if pod is not None:
            self._by_port.pop(pod.port, None)
        if site is not None:
            await site.stop()

    def set_ready(self, uid: str, ready: bool) -> None:
        """Mark a pod ready or not: only ready pods receive traffic."""
        if uid in self._pods:
            self._pods[uid].ready = ready

    def exposition(self, uid: str) -> bytes | None:
        """A pod's metrics in Prometheus text format, or None for an unknown pod."""
        pod = self._pods.get(uid)
        if pod is None:
            return None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_PodCollector(pod))
        return generate_latest(registry)

    def targets(self) -> list[dict[str, Any]]:
        """Prometheus HTTP SD: one target group per pod."""
        return [
            {"targets": [f"{self.host}:{pod.port}"], "labels": pod.target_labels()}
            for pod in sorted(self._pods.values(), key=lambda p: (p.namespace, p.name))
        ]

    async def _serve(self, request: web.Request) -> web.Response:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        pod = self._by_port.get(sockname[1]) if sockname else None
        uid = next((u for u, p in self._pods.items() if p is pod), None)
        body = self.exposition(uid) if uid else None
        if body is None:
            raise web.HTTPNotFound(text="no such pod")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _generate(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.generate(now - last)
            last = now

    def generate(self, elapsed_s: float) -> None:
        """Simulate `elapsed_s` seconds of traffic to every ready pod."""
        # Thousands of requests a second with many pods: no attribute lookups per request.
        uniform, gauss, exp = self._rng.random, self._rng.gauss, math.exp
        for pod in self._pods.values():
            if not pod.ready:
                continue
            rule = self.rules.for_image(pod.image)
            owed = pod.carry + rule.requests_per_second * elapsed_s
            count = int(owed)
            pod.carry = owed - count
            median = rule.latency_ms / 1000.0
            error_rate = rule.error_rate
            for _ in range(count):
                error = uniform() < error_rate
                pod.record(error, median * exp(gauss(0.0, LATENCY_SIGMA)))
