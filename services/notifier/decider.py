"""The notifier's pure core: which notifications an event makes, and each one only once.

No I/O, clock or logging. The shell reads what an event is about (the
application and the deployment, from the log) and asks:

- `routed`: could any route take this event at all? Most events make no
  notification, and then nothing more is read;
- `schedule`: the notifications it makes — for each receiver the routes
  give, one message of the first (most specific) PipeCD type its routes
  take, composed and rendered for the receiver (Block Kit for Slack, the JSON
  `Message` for a webhook) as a `NotificationScheduled`, under an id derived
  from the event and the receiver;
- `SCHEDULING` (the decider of `notification-<id>`): append it unless the
  stream already holds it, which is the dedupe of a redelivered event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from services.notifier.notify.catalog import NotificationType, notification_types_of
from services.notifier.notify.facts import AppFacts, DeploymentFacts
from services.notifier.notify.message import (
    NO_MENTIONS,
    Message,
    compose,
    config_mentions_for,
    mentions_for,
    merge_mentions,
)
from services.notifier.notify.routing import RouteFacts, receivers_for
from services.notifier.notify.slack import slack_payload
from services.notifier.notify.webhook import webhook_body
from services.notifier.targets import Target
from shared.config.control import NotificationRoute
from shared.decider import Functions
from shared.events import vocabulary
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import ConfigMention, NotificationScheduled
from shared.events.ids import notification_id_of

__all__ = [
    "SCHEDULING",
    "Scheduled",
    "render",
    "routed",
    "schedule",
]

_json = msgspec.json.Encoder(order="deterministic")


def routed(routes: Sequence[NotificationRoute], event: Event) -> bool:
    """Whether any route takes any notification type `event` makes, whatever its application.

    Application names and labels only narrow a route further, so a type no route
    takes for an event about no application goes nowhere.
    """
    return any(receivers_for(routes, RouteFacts(type=t)) for t in notification_types_of(event))


@dataclass(frozen=True)
class Scheduled:
    """One notification to schedule: for whom, of which type, and the event that records it."""

    target: Target
    type: NotificationType
    event: NotificationScheduled


def schedule(
    recorded: RecordedEvent,
    application: AppFacts | None,
    deployment: DeploymentFacts | None,
    *,
    routes: Sequence[NotificationRoute],
    targets: Mapping[str, Target],
    web_url: str = "",
    app_mentions: Sequence[ConfigMention] = (),
) -> tuple[list[Scheduled], list[str]]:
    """(the notifications `recorded` makes, the receivers routed to that no target names)."""
    types = notification_types_of(recorded.event)
    app_name = application.name if application is not None else ""
    labels = dict(application.labels) if application is not None else {}
    chosen: dict[str, NotificationType] = {}
    for type_ in types:
        facts = RouteFacts(type=type_, app_name=app_name, labels=labels)
        for receiver in receivers_for(routes, facts):
            chosen.setdefault(receiver, type_)
    made, unknown = [], []
    for receiver, type_ in chosen.items():
        target = targets.get(receiver)
        if target is None:  # the config loader refuses this; be safe anyway
            unknown.append(receiver)
            continue
        event = _scheduled(
            recorded, type_, types, target, application, deployment, web_url, app_mentions
        )
        made.append(Scheduled(target, type_, event))
    return made, unknown


def _scheduled(
    recorded: RecordedEvent,
    type_: NotificationType,
    types: tuple[NotificationType, ...],
    target: Target,
    application: AppFacts | None,
    deployment: DeploymentFacts | None,
    web_url: str,
    app_mentions: Sequence[ConfigMention],
) -> NotificationScheduled:
    notification_id = notification_id_of(str(recorded.event_id), target.name)
    # Whoever asked to be mentioned for any of the event's types is: a mention for
    # DEPLOYMENT_FAILED still reaches its people when the message is the more specific type.
    # The receiver's own mentions, then those the application's config asks for.
    mentions = (
        merge_mentions(
            [mentions_for(target.slack, t) for t in types]
            + [config_mentions_for(app_mentions, t) for t in types]
        )
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
        web_url=web_url,
        mentions=mentions,
    )
    return NotificationScheduled(
        notification_id=notification_id,
        receiver=target.name,
        receiver_kind=vocabulary.ReceiverKind(target.kind),
        notification_type=type_.value,
        source_event_id=str(recorded.event_id),
        source_stream_id=recorded.stream_id,
        body=render(target, message).decode(),
        application_id=application.application_id if application is not None else "",
        deployment_id=deployment.deployment_id if deployment is not None else "",
    )


def render(target: Target, message: Message) -> bytes:
    """The body POSTed to `target` for `message`."""
    if target.kind == "slack":
        return _json.encode(slack_payload(message))
    return webhook_body(message)


def _evolve_scheduled(scheduled: bool, event: Event) -> bool:
    return scheduled or isinstance(event, NotificationScheduled)


def _decide_scheduled(scheduled: bool, notification: NotificationScheduled) -> list[Event]:
    # Scheduled already (a redelivered event): the first one stands.
    return [] if scheduled else [notification]


SCHEDULING: Final = Functions[bool, NotificationScheduled](
    False, _evolve_scheduled, _decide_scheduled
)
"""`notification-<id>`: scheduled once; its attempts and outcome are the delivery's."""
