"""The recorded live objects of an application nested for display (the console, the CLI).

Pure, and light to import (the CLI uses it). `nest` puts each object under its
first owner that is in the list (ownerReferences by uid: a Pod under its
ReplicaSet under its Deployment), the rest at the top (Services, ConfigMaps…),
siblings by kind, namespace and name. What
`shared.platform.livetree.observe` recorded is the input; `shows_providers`
says whether each object's platform provider is worth printing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.events.catalog import LiveResource

__all__ = ["TreeNode", "nest", "shows_providers", "walk"]


@dataclass
class TreeNode:
    """One object in the display tree, with what it owns."""

    resource: LiveResource
    children: list[TreeNode] = field(default_factory=list)


def nest(resources: Iterable[LiveResource]) -> list[TreeNode]:
    """The recorded objects as a forest: each under its first owner that is listed (by
    uid), the rest at the top; siblings by kind, namespace and name. An owner cycle (a
    hostile cluster can write one) is cut: its objects go to the top."""
    nodes = [TreeNode(r) for r in resources]
    by_uid = {n.resource.uid: n for n in nodes if n.resource.uid}
    parent_of: dict[int, TreeNode] = {}
    for node in nodes:
        owner = next((by_uid[o] for o in node.resource.owners if o in by_uid), None)
        if owner is not None and owner is not node:
            parent_of[id(node)] = owner
    for node in nodes:
        seen, current = {id(node)}, parent_of.get(id(node))
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            current = parent_of.get(id(current))
        if current is node:  # its owners come back round to it: cut it loose
            parent_of.pop(id(node), None)
    roots: list[TreeNode] = []
    for node in nodes:
        owner = parent_of.get(id(node))
        (owner.children if owner is not None else roots).append(node)

    def order(items: list[TreeNode]) -> list[TreeNode]:
        items.sort(key=lambda n: (n.resource.kind, n.resource.namespace, n.resource.name))
        for item in items:
            order(item.children)
        return items

    return order(roots)


def walk(forest: Iterable[TreeNode], depth: int = 0) -> Iterable[tuple[int, LiveResource]]:
    """Every object of the forest with its depth, parents before children."""
    for node in forest:
        yield depth, node.resource
        yield from walk(node.children, depth + 1)


def shows_providers(resources: Iterable[LiveResource]) -> bool:
    """Whether the objects come from more than one platform provider (`resourceRoutes`):
    only then does a display say, for each, which cluster it is on."""
    return len({r.provider for r in resources}) > 1
