"""The notifier's consumer: turn events into scheduled notifications, exactly once each.

For every event (`<prefix>.evt.>`), in the consumer's transaction:

1. `decider.routed` (pure) says whether any route takes a notification type it
   makes — most make none, and cost nothing more;
2. the application (name, labels: `application-<id>`) and the deployment
   (commit, stage, reason: `deployment-<id>` folded up to this event, on from
   where the last event of it left off: `deployment_facts.py`) are read from
   the log on the same connection;
3. `decider.schedule` (pure) gives, for each receiver the routes name, one
   message of the first type its routes take, rendered as a
   `NotificationScheduled` whose id is derived from the event and the receiver;
4. each is appended to `notification-<id>` by `shared.eventlog.execute` with the
   `SCHEDULING` decider (once: a stream that holds it already decides nothing)
   and queued in `notifier_outbox`.

The consumer's inbox record commits with them: a redelivered event schedules
nothing new, and a crash before the commit schedules it all again. The
delivery worker (`delivery.py`) sends what is queued.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from services.notifier.application_facts import LatestRegistrations
from services.notifier.decider import (
    SCHEDULING,
    Scheduled,
    render,
    routed,
    schedule,
)
from services.notifier.deployment_facts import DeploymentFactsCache
from services.notifier.notify.facts import (
    AppFacts,
    DeploymentFacts,
    config_mentions_of,
    fold_application,
)
from services.notifier.outbox import Outbox
from services.notifier.targets import Target
from shared.config.control import NotificationRoute
from shared.eventlog import EventStore, deterministic_event_id
from shared.eventlog.envelope import envelope
from shared.eventlog.execute import execute
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import ConfigMention
from shared.events.streams import (
    application_config_stream,
    deployment_stream,
    notification_stream,
)
from shared.logs import get_logger

# `render` is the decider's, re-exported where callers look.
__all__ = ["CONSUMER_NAME", "HANDLES", "Notifier", "ordering_key", "render"]

log = get_logger("slipway.notifier")

CONSUMER_NAME: Final = "notifier"
HANDLES: Final[tuple[type[Event], ...] | None] = None
"""Every event: which ones make a notification is the routes' and catalog's call
(`services.notifier.notify.catalog`), and they are read per event, not fixed at start-up."""


class Notifier:
    """The consumer's handler: schedules the notifications an event makes."""

    def __init__(
        self,
        *,
        store: EventStore,
        routes: Sequence[NotificationRoute],
        targets: Mapping[str, Target],
        web_url: str = "",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.routes = tuple(routes)
        self.targets = dict(targets)
        self.web_url = web_url
        self.deployments = DeploymentFactsCache(store)
        self.applications = LatestRegistrations(store)
        self.scheduled_total = Counter(
            "slipway_notifier_scheduled",
            "notifications scheduled by this replica, by receiver and PipeCD type",
            ["receiver", "type"],
            registry=registry if registry is not None else CollectorRegistry(),
        )

    async def handle(self, recorded: RecordedEvent, conn: asyncpg.Connection) -> None:
        """Schedule `recorded`'s notifications inside the consumer's transaction."""
        if not routed(self.routes, recorded.event):
            return  # most events: nothing more to read
        deployment = await self._deployment(recorded, conn)
        application, app_mentions = await self._application(recorded, deployment, conn)
        made, unknown = schedule(
            recorded,
            application,
            deployment,
            routes=self.routes,
            targets=self.targets,
            web_url=self.web_url,
            app_mentions=app_mentions,
        )
        for receiver in unknown:
            log.warning("route_to_unknown_receiver", receiver=receiver)
        for scheduled in made:
            await self._schedule(recorded, scheduled, conn)

    async def _schedule(
        self, recorded: RecordedEvent, scheduled: Scheduled, conn: asyncpg.Connection
    ) -> None:
        notification_id = scheduled.event.notification_id
        event_id = deterministic_event_id("notification", notification_id, "scheduled")
        await execute(
            self.store,
            notification_stream(notification_id),
            SCHEDULING,
            scheduled.event,
            envelope(caused_by=recorded),
            event_ids=lambda _index, _event: event_id,
            conn=conn,
            # Inside the consumer's transaction: a conflict fails the batch, which is retried.
            max_attempts=1,
        )
        # A Slack Web API receiver threads one deployment's messages (a hook cannot).
        thread_key = scheduled.event.deployment_id if scheduled.target.slack_api else ""
        await Outbox.schedule(conn, notification_id, scheduled.target.name, thread_key)
        # Counted before the commit: a rolled-back batch is scheduled (and counted) again.
        self.scheduled_total.labels(scheduled.target.name, scheduled.type.value).inc()
        log.info(
            "notification_scheduled",
            notification_id=notification_id,
            receiver=scheduled.target.name,
            type=scheduled.type.value,
        )

    async def _deployment(
        self, recorded: RecordedEvent, conn: asyncpg.Connection
    ) -> DeploymentFacts | None:
        deployment_id = getattr(recorded.event, "deployment_id", "")
        if not isinstance(deployment_id, str) or not deployment_id:
            return None
        return await self.deployments.facts_at(deployment_id, recorded, conn)

    async def _application(
        self,
        recorded: RecordedEvent,
        deployment: DeploymentFacts | None,
        conn: asyncpg.Connection,
    ) -> tuple[AppFacts | None, tuple[ConfigMention, ...]]:
        """The application, and the `notification.mentions` of its config, as at the event."""
        application_id = getattr(recorded.event, "application_id", "")
        if not application_id and deployment is not None:
            application_id = deployment.application_id
        if not isinstance(application_id, str) or not application_id:
            return None, ()
        registered = await self.applications.latest(application_id, conn)
        # The config's labels as they were at this event, also when composed again later.
        config = await self.store.read_stream(
            application_config_stream(application_id),
            up_to_position=recorded.global_position,
            conn=conn,
        )
        facts = fold_application([registered] if registered else [], (e.event for e in config))
        mentions = config_mentions_of(e.event for e in config)
        return facts or AppFacts(application_id=application_id, name=application_id), mentions


def ordering_key(recorded: RecordedEvent) -> str:
    """Events of one deployment (or else one stream) are scheduled in their order, so their
    notifications are queued in it; others are scheduled concurrently."""
    deployment_id = getattr(recorded.event, "deployment_id", "")
    return deployment_stream(deployment_id) if deployment_id else recorded.stream_id
