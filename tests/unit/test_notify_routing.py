"""Routing (pure): which routes take which notification, PipeCD's way."""

from __future__ import annotations

import pytest

from services.notifier.notify.catalog import NotificationType
from services.notifier.notify.routing import RouteFacts, matches, receivers_for
from shared.config.control import NotificationRoute

T = NotificationType

FAILED_PRD_WEB = RouteFacts(type=T.DEPLOYMENT_FAILED, app_name="web", labels={"env": "prd"})


def route(**kw: object) -> NotificationRoute:
    return NotificationRoute(name="r", receiver=str(kw.pop("receiver", "slack")), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, True),
        ({"events": ("DEPLOYMENT_FAILED",)}, True),
        ({"events": ("DEPLOYMENT_SUCCEEDED",)}, False),
        ({"ignore_events": ("DEPLOYMENT_FAILED",)}, False),
        ({"groups": ("DEPLOYMENT",)}, True),
        ({"groups": ("APPLICATION_SYNC",)}, False),
        ({"ignore_groups": ("DEPLOYMENT",)}, False),
        ({"apps": ("web", "api")}, True),
        ({"apps": ("api",)}, False),
        ({"ignore_apps": ("web",)}, False),
        ({"labels": {"env": "prd"}}, True),
        ({"labels": {"env": "dev"}}, False),
        ({"labels": {"env": "prd", "team": "a"}}, False),
        ({"ignore_labels": {"env": "prd"}}, False),
        ({"ignore_labels": {"env": "dev"}}, True),
    ],
)
def test_each_list_filters_and_empty_means_any(fields: dict[str, object], expected: bool) -> None:
    """Each of events, groups, apps and labels (and their ignore lists) filters on its own."""
    assert matches(route(**fields), FAILED_PRD_WEB) is expected


@pytest.mark.parametrize(
    "fields",
    [
        {"events": ("DEPLOYMENT_FAILED",), "ignore_events": ("DEPLOYMENT_FAILED",)},
        {"groups": ("DEPLOYMENT",), "ignore_events": ("DEPLOYMENT_FAILED",)},
        {"apps": ("web",), "ignore_apps": ("web",)},
        {"labels": {"env": "prd"}, "ignore_labels": {"env": "prd"}},
        {"events": ("DEPLOYMENT_FAILED",), "ignore_groups": ("DEPLOYMENT",)},
    ],
)
def test_ignore_wins(fields: dict[str, object]) -> None:
    """A notification both asked for and ignored is not routed."""
    assert not matches(route(**fields), FAILED_PRD_WEB)


def test_app_and_label_filters_pass_notifications_about_no_application() -> None:
    """apps/labels constrain only application notifications (PipeCD's PIPED_* pass them)."""
    piped = RouteFacts(type=T.PIPED_STARTED)
    assert matches(route(apps=("web",), labels={"env": "prd"}), piped)
    assert not matches(route(groups=("DEPLOYMENT",)), piped)


def test_receivers_once_each_in_route_order() -> None:
    """Two matching routes to one receiver give one message; non-matching routes none."""
    routes = [
        route(receiver="audit"),
        route(receiver="slack", events=("DEPLOYMENT_FAILED",)),
        route(receiver="audit", labels={"env": "prd"}),
        route(receiver="pager", ignore_labels={"env": "prd"}),
    ]
    assert receivers_for(routes, FAILED_PRD_WEB) == ("audit", "slack")
    assert receivers_for([], FAILED_PRD_WEB) == ()


@pytest.mark.parametrize(
    ("fields", "about_none"),
    [
        ({}, True),
        ({"events": ("DEPLOYMENT_FAILED",)}, True),
        ({"events": ("DEPLOYMENT_SUCCEEDED",)}, False),
        ({"ignore_groups": ("DEPLOYMENT",)}, False),
        ({"apps": ("web",)}, True),
        ({"apps": ("api",)}, True),
        ({"labels": {"env": "prd"}}, True),
        ({"ignore_labels": {"env": "prd"}}, True),
        ({"ignore_apps": ("api",)}, True),
    ],
)
def test_an_application_only_narrows_a_route(fields: dict[str, object], about_none: bool) -> None:
    """A route that takes a notification about an application takes it about none too (the
    consumer skips reading the streams when no route takes the type for no application)."""
    without_app = RouteFacts(type=FAILED_PRD_WEB.type)
    assert matches(route(**fields), without_app) is about_none
    assert about_none or not matches(route(**fields), FAILED_PRD_WEB)
