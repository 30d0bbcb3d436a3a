"""`python -m services.notifier [--burst]`: wiring only — settings, control config, the
consumer that schedules notifications, the worker that delivers them, and the raw-event
webhooks (`spec.eventHooks`). `--burst` delivers the notifications the log holds so far
(retries included), then exits; event hooks follow the log for ever, so not in a burst."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta

from services.notifier.delivery import DeliveryWorker
from services.notifier.event_hooks import EventHookWorker, hook_targets_of
from services.notifier.notify.retry import RetryPolicy
from services.notifier.outbox import Outbox
from services.notifier.service import CONSUMER_NAME, HANDLES, Notifier, ordering_key
from services.notifier.targets import SLACK_API_URL, targets_of
from shared.events.base import RecordedEvent
from shared.runtime import Component, ServiceRuntime, run_service
from shared.settings import ServiceSettings
from shared.wiring import EventWiring, control_config

NAME = "notifier"


class NotifierSettings(ServiceSettings, frozen=True, kw_only=True):
    """The notifier's settings (`SLIPWAY_*` environment variables)."""

    control_config: str
    """Path of the control config: the notification routes and receivers."""
    notifier_max_attempts: Annotated[int, Meta(ge=1, le=100)] = 8
    """Attempts per notification before it is given up (`NotificationFailed`)."""
    notifier_backoff_base_s: Annotated[float, Meta(ge=0, le=3600)] = 1.0
    """The wait after the first failed attempt; it doubles after each one."""
    notifier_backoff_cap_s: Annotated[float, Meta(ge=0, le=86400)] = 300.0
    """The longest wait between two attempts."""
    notifier_http_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 10.0
    """How long one POST may take, connecting included."""
    notifier_lease_s: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    """How long a claimed notification stays this replica's; must exceed the HTTP timeout."""
    notifier_concurrency: Annotated[int, Meta(ge=1, le=10_000)] = 32
    """POSTs one replica has in flight at once."""
    notifier_poll_interval_s: Annotated[float, Meta(gt=0, le=60)] = 1.0
    """How often the worker looks for due retries and for work scheduled by other replicas."""
    notifier_max_deliver: Annotated[int, Meta(ge=1)] = 20
    """Deliveries of one event to the consumer before it is dead-lettered."""
    notifier_ack_wait_s: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    """How long an event handed to a replica that died waits before another gets it."""
    notifier_slack_api_url: str = SLACK_API_URL
    """Slack's Web API, for receivers with `oauthToken` and `channelID` (a test's receiver)."""
    notifier_schedule_concurrency: Annotated[int, Meta(ge=1, le=256)] = 1
    """Events scheduled at once, each in its own transaction (one deployment's always in
    order); 1 schedules a fetched batch in one transaction, which costs fewer commits."""


async def setup(runtime: ServiceRuntime[NotifierSettings]) -> Sequence[Component]:
    """Wire the notifier: its targets, outbox deliveries and raw-event hooks."""
    settings = runtime.settings
    if settings.notifier_lease_s <= settings.notifier_http_timeout_s:
        raise ValueError("SLIPWAY_NOTIFIER_LEASE_S must exceed SLIPWAY_NOTIFIER_HTTP_TIMEOUT_S")
    control = control_config(settings.control_config)
    targets = targets_of(control, slack_api_url=settings.notifier_slack_api_url)
    events = await EventWiring.start(runtime)
    notifier = Notifier(
        store=events.store,
        routes=control.spec.notifications.routes,
        targets=targets,
        web_url=control.spec.web_address,
        registry=runtime.metrics,
    )
    outbox = Outbox(events.store, settings.instance, lease_s=settings.notifier_lease_s)
    worker = DeliveryWorker(
        outbox=outbox,
        targets=targets,
        policy=RetryPolicy(
            max_attempts=settings.notifier_max_attempts,
            base_s=settings.notifier_backoff_base_s,
            cap_s=settings.notifier_backoff_cap_s,
        ),
        concurrency=settings.notifier_concurrency,
        http_timeout_s=settings.notifier_http_timeout_s,
        poll_s=settings.notifier_poll_interval_s,
        registry=runtime.metrics,
    )

    async def wake_worker(_event: RecordedEvent) -> None:
        worker.wake.set()

    consumer = events.consumer(
        CONSUMER_NAME,
        notifier.handle,
        handles=HANDLES,
        after_commit=wake_worker,
        max_deliver=settings.notifier_max_deliver,
        ack_wait_s=settings.notifier_ack_wait_s,
        concurrency=settings.notifier_schedule_concurrency,
        ordering_key=ordering_key,
    )
    hooks = EventHookWorker(
        store=events.store,
        database_url=settings.database_url,
        schema=settings.database_schema,
        hooks=hook_targets_of(control),
        policy=RetryPolicy(
            base_s=settings.notifier_backoff_base_s, cap_s=settings.notifier_backoff_cap_s
        ),
        http_timeout_s=settings.notifier_http_timeout_s,
        registry=runtime.metrics,
    )
    if not runtime.burst:
        # Raw-event webhooks (docs/events.md) follow the log itself, not the consumer.
        return [consumer.run, worker.run, hooks.run]

    async def idle() -> bool:
        return (
            not consumer.in_flight
            and await events.backlog(CONSUMER_NAME) == 0
            and await outbox.pending() == 0
        )

    async def deliver_then_stop(stop: asyncio.Event) -> None:
        await consumer.ensure()
        await worker.run(stop, until_idle=idle)
        runtime.request_stop("burst: every notification delivered or given up")

    return [consumer.run, deliver_then_stop]


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, NotifierSettings, setup, burst="--burst" in sys.argv[1:]))
