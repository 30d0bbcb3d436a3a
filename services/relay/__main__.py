"""`python -m services.relay`: wiring only — settings, connections, run until SIGTERM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta
from prometheus_client import Gauge

from services.relay.relay import Relay
from shared.messaging import DEFAULT_DUPLICATE_WINDOW_S, ensure_event_stream
from shared.runtime import Component, ServiceRuntime, run_service
from shared.settings import ServiceSettings

NAME = "relay"


class RelaySettings(ServiceSettings, frozen=True, kw_only=True):
    """The relay's settings (`SLIPWAY_*` environment variables)."""

    relay_batch_size: int = 1000
    relay_max_in_flight: int = 512
    relay_duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
    relay_stream_replicas: Annotated[int, Meta(ge=1, le=5)] = 1
    """JetStream replicas of the events stream (3 on a 3-node NATS cluster)."""


async def setup(runtime: ServiceRuntime[RelaySettings]) -> Sequence[Component]:
    """Wire the relay: the JetStream stream and the log-to-NATS publisher."""
    settings = runtime.settings
    js = runtime.nc.jetstream()
    await ensure_event_stream(
        js,
        runtime.subjects,
        reconcile=True,
        duplicate_window_s=settings.relay_duplicate_window_s,
        max_age_s=settings.events_stream_max_age_s,
        max_bytes=settings.events_stream_max_bytes,
        replicas=settings.relay_stream_replicas,
    )
    relay = Relay(
        database_url=settings.database_url,
        schema=settings.database_schema,
        js=js,
        subjects=runtime.subjects,
        batch_size=settings.relay_batch_size,
        max_in_flight=settings.relay_max_in_flight,
        statement_timeout_s=settings.database_statement_timeout_s,
        idle_in_transaction_timeout_s=settings.database_idle_in_transaction_timeout_s,
    )
    Gauge(
        "slipway_relay_leader", "1 while this replica leads the relay", registry=runtime.metrics
    ).set_function(lambda: float(relay.is_leader))
    Gauge(
        "slipway_relay_published_events", "events published since start", registry=runtime.metrics
    ).set_function(lambda: float(relay.published))
    Gauge(
        "slipway_relay_skipped_events",
        "events NATS could never take, skipped and recorded as EventPublishFailed, since start",
        registry=runtime.metrics,
    ).set_function(lambda: float(relay.skipped))
    return [relay.run]


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, RelaySettings, setup))
