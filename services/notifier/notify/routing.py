"""Which receivers a notification goes to: the routes of the control config, as PipeCD
matches them (pkg/app/piped/notifier/matcher.go).

A route matches when nothing it ignores applies and everything it asks for
does. Each list is "any" when empty; an ignore list wins over the list it
mirrors. `apps` and `labels` constrain only notifications about an
application: a route with `apps: [web]` still passes a notification that
names none (PipeCD's `PIPED_STARTED`, for one), as in PipeCD. Labels match
when every `labels` pair is among the application's labels; `ignoreLabels`
rejects an application carrying any one of its pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

from services.notifier.notify.catalog import GROUP_OF, NotificationType
from shared.config.control import NotificationRoute

__all__ = ["RouteFacts", "matches", "receivers_for"]


class RouteFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What routing looks at; `app_name` is "" when the notification is about no application."""

    type: NotificationType
    app_name: str = ""
    labels: Mapping[str, str] = msgspec.field(default_factory=dict)


def matches(route: NotificationRoute, facts: RouteFacts) -> bool:
    """Whether `route` takes a notification with these facts."""
    event, group = facts.type.value, GROUP_OF[facts.type].value
    about_app = bool(facts.app_name)
    if event in route.ignore_events or group in route.ignore_groups:
        return False
    if about_app and facts.app_name in route.ignore_apps:
        return False
    if about_app and any(facts.labels.get(k) == v for k, v in route.ignore_labels.items()):
        return False
    if route.events and event not in route.events:
        return False
    if route.groups and group not in route.groups:
        return False
    if about_app and route.apps and facts.app_name not in route.apps:
        return False
    return not (about_app and any(facts.labels.get(k) != v for k, v in route.labels.items()))


def receivers_for(routes: Iterable[NotificationRoute], facts: RouteFacts) -> Sequence[str]:
    """The receivers of every matching route, each once, in the routes' order.

    Two routes to one receiver make one message, not two: the receiver is the
    unit a person reads.
    """
    found: dict[str, None] = {}
    for route in routes:
        if matches(route, facts):
            found.setdefault(route.receiver)
    return tuple(found)
