"""The application page's live resources: drift's newest record, nested, each with its age.

The record is the one `GET /applications/{id}/live` answers
(`routes.live_resources.newest_live_resources`); `shared.resourcetree.nest` puts
each Pod under its ReplicaSet under its Deployment; when they span several
platform providers (`resourceRoutes`), each says the one it is on. It rides on the page's live
part: the event names the application, so the page's live stream redraws it
when drift records a change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from services.api.routes.live_resources import newest_live_resources
from shared.eventlog import EventStore
from shared.events.catalog import LiveResource
from shared.resourcetree import TreeNode, nest, shows_providers

__all__ = ["LiveTree", "created_at", "live_tree"]


@dataclass(frozen=True)
class LiveTree:
    """The application's live objects, nested for the page, with when drift recorded them."""

    forest: list[TreeNode]
    recorded_at: datetime
    count: int
    truncated: int
    providers: bool = False
    """Whether the objects span several platform providers: each then says its own."""


def created_at(resource: LiveResource) -> datetime | None:
    """The object's creation time, or None when the cluster wrote something else: the
    text came from the cluster, and a time without a zone is read as UTC."""
    try:
        when = datetime.fromisoformat(resource.created_at)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def live_tree(store: EventStore, application_id: str) -> LiveTree | None:
    """The application's live objects as drift last recorded them, nested; None before."""
    found = await newest_live_resources(store, application_id)
    if found is None:
        return None
    resources = found.observed.resources
    return LiveTree(
        nest(resources),
        found.at,
        len(resources),
        found.observed.truncated,
        providers=shows_providers(resources),
    )
