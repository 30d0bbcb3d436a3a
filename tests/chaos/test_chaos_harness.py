"""The chaos run's own tools, each shown to do what the invariants rely on.

The fault proxy against a real echo server (latency, black hole, reset); the
seeded plans; and the checks that must find a broken invariant when there is
one (an overlap of two replicas' side effects, a notification sent twice).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest

from slipway_sandbox.chaos_plan import FAULT_KINDS, fault_schedule, plan_workload
from slipway_sandbox.chaos_stack import HttpRequests, kubesim_effect, prometheus_effect
from slipway_sandbox.chaos_verdicts import (
    Invariants,
    SideEffect,
    notification_verdicts,
    overlapping_side_effects,
)
from slipway_sandbox.faults import FaultProxy


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def _round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    writer.write(data)
    await writer.drain()
    return await reader.readexactly(len(data))


async def test_proxy_passes_delays_black_holes_and_resets(echo_port: int) -> None:
    async with FaultProxy(echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await _round_trip(reader, writer, b"plain") == b"plain"

        proxy.add_latency(0.2)
        started = time.monotonic()
        assert await _round_trip(reader, writer, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.4  # 0.2 s each way
        proxy.heal()

        proxy.black_hole()
        writer.write(b"held")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.3)
        proxy.heal()  # what was sent meanwhile arrives, as after a partition
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"

        assert proxy.reset_connections() == 1
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await _round_trip(reader, writer, b"gone")
        writer.close()

        # New connections still work after a reset.
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await _round_trip(reader, writer, b"again") == b"again"
        writer.close()


def test_the_same_seed_plans_the_same_run() -> None:
    a, b = plan_workload(random.Random(5), 50), plan_workload(random.Random(5), 50)
    assert a == b and a.deployments >= 50
    kinds = {d.app.kind for r in a.rounds for d in r.deployments}
    assert kinds == {"quick", "canary", "approval", "script"}
    assert {d.status for r in a.rounds for d in r.deployments} == {"SUCCESS", "FAILURE"}
    short = plan_workload(random.Random(1), 8)
    assert short.deployments == 10  # 4 synced (3 prd, 1 script), then one round of 6
    assert [a.name for a in short.apps if a.kind == "script"] == ["script0-prd"]

    def faults(seed: int) -> list[str]:
        schedule = fault_schedule(random.Random(seed), ["executor-0"], mean_gap_s=1.0)
        return [next(schedule).describe() for _ in range(30)]

    assert faults(3) == faults(3) != faults(4)
    # Every kind comes first, once: a short run covers all of them.
    assert {f.split(" ")[0] for f in faults(3)[: len(FAULT_KINDS)]} == set(FAULT_KINDS)


def test_overlapping_side_effects_are_found_and_a_takeover_is_not_one() -> None:
    windows = {"svc0-prd": [(100.0, "K8S_CANARY_ROLLOUT"), (200.0, "ANALYSIS")]}
    takeover = [
        SideEffect(101.0, 0, "svc0-prd", "apply"),
        SideEffect(102.0, 0, "svc0-prd", "apply"),
        SideEffect(110.0, 1, "svc0-prd", "apply"),  # after replica 0 stopped
    ]
    assert overlapping_side_effects(takeover, windows) == []
    stale = [*takeover, SideEffect(111.0, 0, "svc0-prd", "apply")]  # replica 0 woke up
    assert [kind for kind, _ in overlapping_side_effects(stale, windows)] == ["apply"]
    ticks = [
        SideEffect(201.0, 0, "svc0-prd", "analysis"),
        SideEffect(202.0, 1, "svc0-prd", "analysis"),
        SideEffect(203.0, 0, "svc0-prd", "analysis"),
    ]
    assert [kind for kind, _ in overlapping_side_effects(ticks, windows)] == ["analysis"]


def test_notifications_lost_and_sent_twice_are_counted() -> None:
    invariants = Invariants()
    notification_verdicts(
        invariants,
        scheduled={"n1": "DEPLOYMENT_FAILED a", "n2": "DEPLOYMENT_FAILED b"},
        deliveries={"n1": 2},
        failed={"d1": "a", "d2": "b", "d3": "c"},
        announced=["d1", "d2"],
    )
    assert invariants.notifications_duplicated == 1
    assert invariants.notifications_lost == 2  # n2 never arrived; c failed unannounced
    assert not invariants.held


def test_requests_through_the_proxies_are_read_as_side_effects() -> None:
    seen: list[tuple[str, str] | None] = []
    parser = HttpRequests(lambda m, t, b: seen.append(kubesim_effect(m, t, b)))
    body = b'{"kind": "Deployment"}'
    request = (
        b"PATCH /apis/apps/v1/namespaces/prd/deployments/svc1-canary?fieldManager=slipway"
        b" HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    get = b"GET /apis/apps/v1/namespaces/prd/deployments/svc1 HTTP/1.1\r\nHost: x\r\n\r\n"
    stream = request + get + request
    for index in range(0, len(stream), 7):  # split anywhere, as TCP may
        parser.feed(stream[index : index + 7])
    assert seen == [("svc1-prd", "apply"), None, ("svc1-prd", "apply")]
    query = 'sum(rate(x{namespace="prd", job="svc0", pipecd_dev_variant="canary"}[4s]))'
    form = b"query=" + query.replace(" ", "+").encode()
    assert prometheus_effect("POST", "/api/v1/query_range", form) == ("svc0-prd", "analysis")
