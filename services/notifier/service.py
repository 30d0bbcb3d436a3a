"""The notifier's consumer: turn events into scheduled notifications, exactly once each.

For every event (`<prefix>.evt.>`), in the consumer's transaction:

1. `notification_types_of` (pure) says which PipeCD notification types it makes —
   most make none, and cost nothing more; a receiver gets one message, of the
   first of them its routes take;
2. the application (name, labels: `application-<id>`) and the deployment
   (commit, stage, reason: `deployment-<id>` folded up to this event) are read
   from the log on the same connection;
3. the routes (pure, `services.notifier.notify.routing`) give the receivers;
4. for each receiver, the message is composed and rendered (Block Kit for
   Slack, the JSON `Message` for a webhook) and appended as a
   `NotificationScheduled` on `notification-<id>`, where the id is derived
   from the event and the receiver, and queued in `notifier_outbox`.

The consumer's inbox record commits with them: a redelivered event schedules
nothing new, and a crash before the commit schedules it all again. The
delivery worker (`delivery.py`) sends what is queued.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import asyncpg
import msgspec
from prometheus_client import CollectorRegistry, Counter

from services.notifier.notify.catalog import NotificationType, notification_types_of
from services.notifier.notify.facts import (
    AppFacts,
    DeploymentFacts,
    fold_application,
    fold_deployment,
)
from services.notifier.notify.message import (
    NO_MENTIONS,
    Message,
    compose,
    mentions_for,
    merge_mentions,
)
from services.notifier.notify.routing import RouteFacts, receivers_for
from services.notifier.notify.slack import slack_payload
from services.notifier.notify.webhook import webhook_body
from services.notifier.outbox import Outbox, notification_stream
from services.notifier.targets import Target
from shared.config.control import NotificationRoute
from shared.eventlog import NO_STREAM, EventStore, deterministic_event_id
from shared.events.base import Metadata, NewEvent, RecordedEvent
from shared.events.catalog import NotificationScheduled
from shared.labels import config_stream
from shared.logs import get_logger
from shared.streams import stream_id
from shared.tracing import current_trace_headers

__all__ = ["CONSUMER_NAME", "Notifier", "notification_id_of", "ordering_key"]

log = get_logger("slipway.notifier")

CONSUMER_NAME: Final = "notifier"

_json = msgspec.json.Encoder(order="deterministic")


def notification_id_of(source_event_id: str, receiver: str) -> str:
    """The notification of one event for one receiver: the same however often it is derived."""
    return deterministic_event_id("notify", source_event_id, receiver).hex


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
        self.scheduled_total = Counter(
            "slipway_notifier_scheduled",
            "notifications scheduled by this replica, by receiver and PipeCD type",
            ["receiver", "type"],
            registry=registry if registry is not None else CollectorRegistry(),
        )

    async def handle(self, recorded: RecordedEvent, conn: asyncpg.Connection) -> None:
        """Schedule `recorded`'s notifications inside the consumer's transaction."""
        types = notification_types_of(recorded.event)
        # Application names and labels only narrow a route further, so types no route
        # takes for an event about no application go nowhere: skip reading the streams.
        if not any(receivers_for(self.routes, RouteFacts(type=t)) for t in types):
            return
        deployment = await self._deployment(recorded, conn)
        application = await self._application(recorded, deployment, conn)
        app_name = application.name if application is not None else ""
        labels = dict(application.labels) if application is not None else {}
        # One message per receiver, of the first (most specific) type its routes take.
        chosen: dict[str, NotificationType] = {}
        for type_ in types:
            facts = RouteFacts(type=type_, app_name=app_name, labels=labels)
            for receiver in receivers_for(self.routes, facts):
                chosen.setdefault(receiver, type_)
        for receiver, type_ in chosen.items():
            target = self.targets.get(receiver)
            if target is None:  # the config loader refuses this; be safe anyway
                log.warning("route_to_unknown_receiver", receiver=receiver)
                continue
            await self._schedule(recorded, type_, types, target, application, deployment, conn)

    async def _schedule(
        self,
        recorded: RecordedEvent,
        type_: NotificationType,
        types: tuple[NotificationType, ...],
        target: Target,
        application: AppFacts | None,
        deployment: DeploymentFacts | None,
        conn: asyncpg.Connection,
    ) -> None:
        notification_id = notification_id_of(str(recorded.event_id), target.name)
        # Whoever asked to be mentioned for any of the event's types is: a mention for
        # DEPLOYMENT_FAILED still reaches its people when the message is the more specific type.
        mentions = (
            merge_mentions(mentions_for(target.slack, t) for t in types)
            if target.slack is not None
            else NO_MENTIONS
        )
        message = compose(
            notification_id=notification_id,
            type_=type_,
            event=recorded.event,
            event_id=str(recorded.event_id),
            event_type=recorded.event_type,
            occurred_at=recorded.recorded_at,
            application=application,
            deployment=deployment,
            web_url=self.web_url,
            mentions=mentions,
        )
        scheduled = NotificationScheduled(
            notification_id=notification_id,
            receiver=target.name,
            receiver_kind=target.kind,
            notification_type=type_.value,
            source_event_id=str(recorded.event_id),
            source_stream_id=recorded.stream_id,
            body=render(target, message).decode(),
            application_id=application.application_id if application is not None else "",
            deployment_id=deployment.deployment_id if deployment is not None else "",
        )
        trace = current_trace_headers()
        metadata = Metadata(
            causation_id=str(recorded.event_id),
            correlation_id=recorded.metadata.correlation_id,
            traceparent=trace.get("traceparent") or recorded.metadata.traceparent,
            tracestate=trace.get("tracestate") or recorded.metadata.tracestate,
        )
        await self.store.append(
            notification_stream(notification_id),
            [
                NewEvent(
                    event=scheduled,
                    event_id=deterministic_event_id("notification", notification_id, "scheduled"),
                    metadata=metadata,
                )
            ],
            expected_version=NO_STREAM,
            conn=conn,
        )
        await Outbox.schedule(conn, notification_id, target.name)
        # Counted before the commit: a rolled-back batch is scheduled (and counted) again.
        self.scheduled_total.labels(target.name, type_.value).inc()
        log.info(
            "notification_scheduled",
            notification_id=notification_id,
            receiver=target.name,
            type=type_.value,
        )

    async def _deployment(
        self, recorded: RecordedEvent, conn: asyncpg.Connection
    ) -> DeploymentFacts | None:
        deployment_id = getattr(recorded.event, "deployment_id", "")
        if not isinstance(deployment_id, str) or not deployment_id:
            return None
        stream = stream_id("deployment", deployment_id)
        if recorded.stream_id == stream:
            # As it was at this event, also when composed again after a restart.
            history = await self.store.read_stream(stream, conn=conn)
            history = [e for e in history if e.stream_version <= recorded.stream_version]
        else:
            history = await self.store.read_stream(
                stream, up_to_position=recorded.global_position, conn=conn
            )
        return fold_deployment(deployment_id, (e.event for e in history))

    async def _application(
        self,
        recorded: RecordedEvent,
        deployment: DeploymentFacts | None,
        conn: asyncpg.Connection,
    ) -> AppFacts | None:
        application_id = getattr(recorded.event, "application_id", "")
        if not application_id and deployment is not None:
            application_id = deployment.application_id
        if not isinstance(application_id, str) or not application_id:
            return None
        history = await self.store.read_stream(stream_id("application", application_id), conn=conn)
        # The config's labels as they were at this event, also when composed again later.
        config = await self.store.read_stream(
            config_stream(application_id), up_to_position=recorded.global_position, conn=conn
        )
        return fold_application((e.event for e in history), (e.event for e in config)) or AppFacts(
            application_id=application_id, name=application_id
        )


def ordering_key(recorded: RecordedEvent) -> str:
    """Events of one deployment (or else one stream) are scheduled in their order, so their
    notifications are queued in it; others are scheduled concurrently."""
    deployment_id = getattr(recorded.event, "deployment_id", "")
    return f"deployment-{deployment_id}" if deployment_id else recorded.stream_id


def render(target: Target, message: Message) -> bytes:
    """The body POSTed to `target` for `message`."""
    if target.kind == "slack":
        return _json.encode(slack_payload(message))
    return webhook_body(message)
