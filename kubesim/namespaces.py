"""The namespace controller: a terminating namespace goes, with its content, after a grace."""

from __future__ import annotations

import time

from kubesim.resources import ResourceType
from kubesim.store import Store


class NamespaceController:
    """Removes a terminating namespace and its content after `grace_s`."""

    def __init__(self, store: Store, namespaces: ResourceType, *, grace_s: float = 1.0) -> None:
        self.store = store
        self.namespaces = namespaces
        self.grace_s = grace_s
        self._terminating: dict[str, float] = {}  # uid → monotonic time first seen terminating

    def sync(self) -> None:
        """One pass: remove each namespace terminating for longer than the grace."""
        now = time.monotonic()
        for ns in list(self.store.items(self.namespaces)):
            meta = ns["metadata"]
            if not meta.get("deletionTimestamp"):
                continue
            since = self._terminating.setdefault(meta["uid"], now)
            if now - since >= self.grace_s:
                self.store.finalize_namespace(self.namespaces, meta["name"])
                del self._terminating[meta["uid"]]
