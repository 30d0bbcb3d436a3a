"""`slipway app get --live`: the application's live resources printed as an indented tree.

The API answers the flat list the drift service recorded (owners' uids on each
object); `shared.resourcetree` nests it, as the console does. When the objects
span several platform providers (`resourceRoutes`), each line names its provider
before the namespace (`b:shop/web`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from shared.events.catalog import LiveResource
from shared.resourcetree import nest, shows_providers, walk

__all__ = ["print_live_tree"]


def print_live_tree(live: Mapping[str, Any]) -> None:
    """Print `GET /applications/{id}/live`'s answer: one line per object, owned ones
    indented under their owner, each with its health and reason."""
    if not live.get("observed_at"):
        print("live resources: not recorded yet (the drift service has not looked)")
        return
    resources = [msgspec.convert(item, LiveResource) for item in live.get("resources") or ()]
    print(f"live resources (recorded at {live['observed_at']}):")
    several = shows_providers(resources)
    for depth, resource in walk(nest(resources)):
        where = f"{resource.namespace}/" if resource.namespace else ""
        if several:  # resourceRoutes spread it: say which cluster each object is on
            where = f"{resource.provider or '?'}:{where}"
        reason = f"  {resource.reason}" if resource.reason else ""
        print(
            f"{'  ' * (depth + 1)}{resource.kind} {where}{resource.name}  {resource.health}{reason}"
        )
    if live.get("truncated"):
        print(f"  … and {live['truncated']} more not recorded (the record is bounded)")
