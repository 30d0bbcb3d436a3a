"""What a controller looks at on its next pass: what changed, and what waits on the clock.

A controller of a real cluster is driven by its informers: it reconciles the
objects whose watch events name them (the object itself, or one it owns),
and an object whose next step is due to time alone (a pod's readiness delay,
a progress deadline) is queued again after a while. kubesim's controllers do
the same, so a pass costs what changed, not the size of the cluster: with a
thousand Deployments settled, one apply reconciles one Deployment, not a
thousand (each of which used to scan every ReplicaSet in the cluster).

Keys are kept in the order they were added, so a run is repeatable (the
ReplicaSet controller names pods from a seeded generator, in the order it
reconciles them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from kubesim.store import Change

Key = tuple[str, str]  # (namespace, name); "" for a cluster-scoped object


class Watching(Protocol):
    """A controller fed by the store's committed writes."""

    def notice(self, change: Change) -> None:
        """Queue the objects `change` concerns."""

    def resync(self) -> None:
        """Queue every object the controller reconciles."""


class WorkQueue:
    """The (namespace, name) keys a controller reconciles on its next pass."""

    def __init__(self) -> None:
        self._changed: dict[Key, None] = {}
        self._waiting: dict[Key, None] = {}

    def add(self, key: Key) -> None:
        """Reconcile the object at the next pass: it (or something it owns) changed."""
        self._changed[key] = None

    def again(self, key: Key) -> None:
        """Reconcile the object at the next pass although nothing changed: time moves it on."""
        self._waiting[key] = None

    def take(self) -> list[Key]:
        """The keys of this pass (changed first, then waiting), emptying the queue."""
        keys = list(self._changed) + [k for k in self._waiting if k not in self._changed]
        self._changed, self._waiting = {}, {}
        return keys

    def __len__(self) -> int:
        return len(self._changed.keys() | self._waiting.keys())


def key_of(obj: dict[str, Any]) -> Key:
    """The (namespace, name) of an object."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def owners(change: Change, kind: str) -> Iterable[Key]:
    """The keys of the `kind` objects owning the changed object, before or after the change
    (an orphaned ReplicaSet still tells its former Deployment)."""
    for obj in (change.obj, change.old):
        if obj is None:
            continue
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace", ""))
        for ref in meta.get("ownerReferences") or ():
            if ref.get("kind") == kind and ref.get("name"):
                yield namespace, str(ref["name"])
