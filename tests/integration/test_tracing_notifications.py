"""A deployment's notifications are in its trace: scheduling (in the consumer's span) and every
delivery attempt (a span of its own, from the worker's claim) continue the event's trace."""

from __future__ import annotations

from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import DeploymentTriggered
from shared.testing import wait_until
from tests.support import Backends
from tests.support.notifier import (
    failing_deployment,
    notifier_running,
    receivers,
    recorded,
    register,
    write_config,
)
from tests.support.tracing import ancestors, in_trace, off_trace, trace_id_of

WAIT_S = 30.0


async def test_each_delivery_attempt_continues_the_deployment_trace(
    backends: Backends, store: EventStore, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """A failed deployment's notification to a receiver down once: the scheduling, the failed
    attempt and the delivery are recorded in the deployment's trace, each attempt a span."""
    async with receivers(fail_first=1) as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[{"name": "all", "receiver": "flaky", "events": ["DEPLOYMENT_FAILED"]}],
        )
        await register(store, "web1", "web", "prd")
        async with notifier_running(control, backends):
            with trace.get_tracer("test.commit").start_as_current_span("commit"):
                await store.append(
                    "deployment-d1",
                    new_events(failing_deployment("d1", "web1")),
                    expected_version=ANY,
                )
            await wait_until(
                recorded(store, "notification_delivered", 1),
                within_s=WAIT_S,
                what="delivery recorded",
            )
    deployment = await store.read_stream("deployment-d1")
    [triggered] = [e for e in deployment if isinstance(e.event, DeploymentTriggered)]
    trace_id = trace_id_of(triggered)
    (delivered,) = server.at("/flaky")
    history = await store.read_stream(f"notification-{delivered.delivery_id}")
    assert [e.event_type for e in history] == [
        "notification_scheduled",
        "notification_attempt_failed",
        "notification_delivered",
    ]
    assert off_trace(history, trace_id) == []
    traced = in_trace(spans, trace_id)
    attempts = sorted(
        (s for s in traced if s.name == "notify flaky"),
        key=lambda s: s.start_time or 0,
    )
    assert [(s.attributes or {}).get("slipway.attempt") for s in attempts] == [1, 2]
    assert [(s.attributes or {}).get("http.response.status_code") for s in attempts] == [503, 200]
    for attempt in attempts:
        chain = ancestors(attempt, traced)
        assert chain[-1:] == ["commit"] and "handle deployment_completed" in chain[0], chain
