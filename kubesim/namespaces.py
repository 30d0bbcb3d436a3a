"""The namespace controller: a terminating namespace goes, with its content, after a grace."""

from __future__ import annotations

import time

from kubesim.resources import ResourceType
from kubesim.store import Change, Store
from kubesim.workqueue import WorkQueue, key_of


class NamespaceController:
    """Removes a terminating namespace and its content after `grace_s`.

    It looks at the namespaces that changed (`notice`), and again at each pass
    at those terminating, until their grace is over (`kubesim.workqueue`).
    """

    def __init__(self, store: Store, namespaces: ResourceType, *, grace_s: float = 1.0) -> None:
        self.store = store
        self.namespaces = namespaces
        self.grace_s = grace_s
        self._terminating: dict[str, float] = {}  # uid → monotonic time first seen terminating
        self.queue = WorkQueue()

    def notice(self, change: Change) -> None:
        """Queue a namespace that changed (one being deleted is marked terminating first)."""
        if change.key == self.namespaces.key and change.type != "DELETED":
            self.queue.add(key_of(change.obj))

    def resync(self) -> None:
        """Queue every namespace."""
        for ns in self.store.items(self.namespaces):
            self.queue.add(key_of(ns))

    def sync(self) -> None:
        """One pass over the queued namespaces: remove each terminating for longer than the
        grace."""
        now = time.monotonic()
        for key in self.queue.take():
            ns = self.store.peek(self.namespaces, *key)
            if ns is None:
                continue
            meta = ns["metadata"]
            if not meta.get("deletionTimestamp"):
                continue
            since = self._terminating.setdefault(meta["uid"], now)
            if now - since >= self.grace_s:
                self.store.finalize_namespace(self.namespaces, meta["name"])
                del self._terminating[meta["uid"]]
            else:
                self.queue.again(key)
