"""The object store: every object in memory, versioned, watched, and garbage-collected.

- One global `resourceVersion` counter, as etcd's revision is: every write
  gets the next number (a string on the wire), and a list reports the counter.
- `metadata.generation` starts at 1 and goes up when anything outside
  `metadata` and `status` changes; a write that changes nothing is a no-op
  and keeps the resourceVersion, as on a real server.
- Every change is kept in a bounded history so a watch can resume from a
  resourceVersion; older than the history is `410 Expired`.
- Deleting follows `ownerReferences`: Background and Foreground delete the
  dependents too (at once — there is no separate garbage collector to wait
  for), Orphan strips the owner reference from them. An object with
  finalizers only gets a `deletionTimestamp` until the last one is removed.

All methods are synchronous: the event loop is the lock, so a read-modify-write
inside one call can never interleave with another request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from kubesim import errors
from kubesim.resources import Registry, ResourceType

Obj = dict[str, Any]
_T = TypeVar("_T")
TypeKey = tuple[str, str]
ObjKey = tuple[TypeKey, str, str]  # (type, namespace, name)

# Fields a client can never set: the store owns them.
_SYSTEM_METADATA = ("uid", "creationTimestamp", "generation", "deletionTimestamp")


def json_copy(value: _T) -> _T:
    """A deep copy of JSON-shaped data (dicts, lists, scalars), as `copy.deepcopy` makes it but
    several times faster: the store copies every object it hands out or takes in, and the
    controllers copy what they write, so this is most of a write's cost."""
    return cast(_T, _copied(value))


def _copied(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copied(v) for v in value)
    return value  # str, int, float, bool, None (and a YAML date): immutable


def now_rfc3339() -> str:
    """The current UTC time as Kubernetes writes timestamps (seconds, `Z`)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Change:
    """One committed write, as a watch reports it."""

    type: str  # ADDED, MODIFIED or DELETED
    key: TypeKey
    obj: Obj
    old: Obj | None
    rv: int


@dataclass(eq=False)
class Subscription:
    """A watcher's queue of changes to one type (in one namespace, or "" for all);
    `None` means the server is stopping."""

    key: TypeKey
    namespace: str = ""
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)


class Store:
    """Every object by type, with resource versions, a change history for watches, and owners."""

    def __init__(self, registry: Registry, *, history: int = 50_000) -> None:
        self.registry = registry
        self._rv = 0
        self._objects: dict[TypeKey, dict[tuple[str, str], Obj]] = {}
        # The same objects by namespace, in the same order: a controller reading one
        # namespace (a Deployment's ReplicaSets) must not walk the whole cluster.
        self._by_namespace: dict[TypeKey, dict[str, dict[str, Obj]]] = {}
        self._history: deque[Change] = deque(maxlen=history)
        # Watch subscriptions by (type, namespace): a change wakes only the watches that can
        # see it (a rollout watched in each of 1,000 namespaces must not wake the other 999).
        self._watching: dict[tuple[TypeKey, str], set[Subscription]] = {}
        self._dependents: dict[str, set[ObjKey]] = {}
        self.listeners: list[Callable[[Change], None]] = []

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out."""
        return self._rv

    # -- reads ---------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Obj | None:
        """A copy of one object, or None."""
        obj = self._objects.get(rtype.key, {}).get((namespace, name))
        return json_copy(obj) if obj is not None else None

    def peek(self, rtype: ResourceType, namespace: str, name: str) -> Obj | None:
        """The stored object itself, for in-process readers that promise not to mutate it."""
        return self._objects.get(rtype.key, {}).get((namespace, name))

    def items(self, rtype: ResourceType, namespace: str | None = None) -> Iterator[Obj]:
        """Stored objects (not copies) of a type, optionally in one namespace."""
        if namespace is None:
            yield from list(self._objects.get(rtype.key, {}).values())
        else:
            yield from list(self._by_namespace.get(rtype.key, {}).get(namespace, {}).values())

    def objects(self, rtype: ResourceType, namespace: str | None = None) -> list[Obj]:
        """Copies of a type's objects, in one namespace or all."""
        return [json_copy(o) for o in self.items(rtype, namespace)]

    def dependents(self, uid: str) -> list[tuple[ResourceType, Obj]]:
        """The objects whose owner references name `uid` (for cascading deletes)."""
        found = []
        for key, ns, name in sorted(self._dependents.get(uid, ())):
            rtype = self._type(key)
            obj = self._objects.get(key, {}).get((ns, name))
            if rtype is not None and obj is not None:
                found.append((rtype, obj))
        return found

    # -- writes --------------------------------------------------------------

    def create(self, rtype: ResourceType, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Store a new object with uid, resourceVersion and timestamps; 409 if the name is taken."""
        meta = obj.setdefault("metadata", {})
        namespace, name = meta.get("namespace", ""), meta["name"]
        bucket = self._objects.setdefault(rtype.key, {})
        if (namespace, name) in bucket:
            raise errors.already_exists(rtype.plural, rtype.group, name)
        obj = json_copy(obj)
        meta = obj["metadata"]
        for system in _SYSTEM_METADATA:
            meta.pop(system, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        if dry_run:
            meta["resourceVersion"] = str(self._rv)
            return json_copy(obj)
        self._commit("ADDED", rtype, obj, None)
        return json_copy(obj)

    def update(
        self,
        rtype: ResourceType,
        obj: Obj,
        *,
        expect_rv: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Replace a stored object; `expect_rv` is the optimistic-concurrency precondition."""
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        current = self._objects.get(rtype.key, {}).get((namespace, name))
        if current is None:
            raise errors.not_found(rtype.plural, rtype.group, name)
        if expect_rv and expect_rv != current["metadata"]["resourceVersion"]:
            raise errors.stale(rtype.plural, rtype.group, name)
        obj = json_copy(obj)
        new_meta = obj.setdefault("metadata", {})
        for system in _SYSTEM_METADATA:
            if system in current["metadata"]:
                new_meta[system] = current["metadata"][system]
            else:
                new_meta.pop(system, None)
        new_meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        if _spec_part(obj) != _spec_part(current):
            new_meta["generation"] = current["metadata"].get("generation", 1) + 1
        if _comparable(obj) == _comparable(current):
            return json_copy(current)
        if dry_run:
            return obj
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            # The last finalizer is gone: the pending deletion completes.
            self._commit("MODIFIED", rtype, obj, current)
            return self._remove(rtype, namespace, name)
        self._commit("MODIFIED", rtype, obj, current)
        return json_copy(obj)

    def delete(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        *,
        propagation: str = "Background",
        preconditions: dict[str, str] | None = None,
        dry_run: bool = False,
    ) -> Obj:
        """Delete after checking preconditions; owned objects are orphaned or deleted with it."""
        current = self._objects.get(rtype.key, {}).get((namespace, name))
        if current is None:
            raise errors.not_found(rtype.plural, rtype.group, name)
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
            raise errors.conflict(rtype.plural, rtype.group, name, "Precondition failed: UID")
        if (
            pre.get("resourceVersion")
            and pre["resourceVersion"] != current["metadata"]["resourceVersion"]
        ):
            raise errors.stale(rtype.plural, rtype.group, name)
        if dry_run:
            return json_copy(current)
        uid = current["metadata"]["uid"]
        if propagation == "Orphan":
            for dep_type, dep in self.dependents(uid):
                orphan = json_copy(dep)
                refs = [
                    r for r in orphan["metadata"].get("ownerReferences", []) if r.get("uid") != uid
                ]
                orphan["metadata"]["ownerReferences"] = refs
                if not refs:
                    del orphan["metadata"]["ownerReferences"]
                self.update(dep_type, orphan)
        else:
            for dep_type, dep in self.dependents(uid):
                dep_meta = dep["metadata"]
                if dep_meta.get("deletionTimestamp"):
                    continue
                self.delete(dep_type, dep_meta.get("namespace", ""), dep_meta["name"])
        if rtype.kind == "Namespace" and not rtype.group:
            return self._terminate_namespace(rtype, current)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return json_copy(current)
            marked = json_copy(current)
            marked["metadata"]["deletionTimestamp"] = now_rfc3339()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            self._commit("MODIFIED", rtype, marked, current)
            return json_copy(marked)
        return self._remove(rtype, namespace, name)

    def _terminate_namespace(self, rtype: ResourceType, current: Obj) -> Obj:
        """Mark a namespace Terminating; `finalize_namespace` removes it and its content later.

        As on a real cluster, deleting a namespace is not instant: the objects
        in it can still be read and deleted for a moment (`kubectl delete -f`
        deletes a manifest's Namespace first, then everything in it).
        """
        if current["metadata"].get("deletionTimestamp"):
            return json_copy(current)
        marked = json_copy(current)
        marked["metadata"]["deletionTimestamp"] = now_rfc3339()
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        marked.setdefault("status", {})["phase"] = "Terminating"
        self._commit("MODIFIED", rtype, marked, current)
        return json_copy(marked)

    def finalize_namespace(self, rtype: ResourceType, namespace: str) -> None:
        """Delete everything in a terminating namespace, then the namespace itself."""
        for content_type in list(self.registry):
            if not content_type.namespaced:
                continue
            for obj in list(self.items(content_type, namespace)):
                if self.peek(content_type, namespace, obj["metadata"]["name"]) is not None:
                    self._remove(content_type, namespace, obj["metadata"]["name"])
        if self.peek(rtype, "", namespace) is not None:
            self._remove(rtype, "", namespace)

    def _remove(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        current = self._objects[rtype.key][(namespace, name)]
        gone = json_copy(current)
        gone["metadata"].setdefault("deletionTimestamp", now_rfc3339())
        self._commit("DELETED", rtype, gone, current)
        return json_copy(gone)

    def _commit(self, kind: str, rtype: ResourceType, obj: Obj, old: Obj | None) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        meta = obj["metadata"]
        ident: ObjKey = (rtype.key, meta.get("namespace", ""), meta["name"])
        if old is not None:
            for ref in old["metadata"].get("ownerReferences", []):
                self._dependents.get(ref.get("uid", ""), set()).discard(ident)
        bucket = self._objects.setdefault(rtype.key, {})
        namespaces = self._by_namespace.setdefault(rtype.key, {})
        if kind == "DELETED":
            bucket.pop(ident[1:], None)
            names = namespaces.get(ident[1], {})
            names.pop(ident[2], None)
            if not names:
                namespaces.pop(ident[1], None)
            self._dependents.pop(meta["uid"], None)
        else:
            bucket[ident[1:]] = obj
            namespaces.setdefault(ident[1], {})[ident[2]] = obj
            for ref in meta.get("ownerReferences", []):
                if ref.get("uid"):
                    self._dependents.setdefault(ref["uid"], set()).add(ident)
        change = Change(kind, rtype.key, obj, old, self._rv)
        self._history.append(change)
        scopes = [(rtype.key, "")] + ([(rtype.key, ident[1])] if ident[1] else [])
        for scope in scopes:
            for sub in self._watching.get(scope, ()):
                sub.queue.put_nowait(change)
        for listener in self.listeners:
            listener(change)

    # -- watching ------------------------------------------------------------

    def subscribe(self, rtype: ResourceType, namespace: str = "") -> Subscription:
        """A new watch subscription to changes of `rtype` (in `namespace` only, when given)."""
        sub = Subscription(rtype.key, namespace)
        self._watching.setdefault((rtype.key, namespace), set()).add(sub)
        return sub

    def subscribers(self) -> int:
        """How many watches are open (tests wait for a watch to be listening)."""
        return sum(len(subs) for subs in self._watching.values())

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering changes to `sub`."""
        scope = (sub.key, sub.namespace)
        watching = self._watching.get(scope)
        if watching is not None:
            watching.discard(sub)
            if not watching:
                del self._watching[scope]

    def since(self, rtype: ResourceType, rv: int) -> list[Change]:
        """Changes to a type after `rv`; `410 Expired` if the history no longer reaches back."""
        if self._history and rv < self._history[0].rv - 1:
            raise errors.expired(rv, self._history[0].rv)
        if rv > self._rv:
            # A resourceVersion from the future: a real server waits for it; so do we.
            return []
        return [c for c in self._history if c.rv > rv and c.key == rtype.key]

    def close(self) -> None:
        """End every watch: the server is stopping."""
        for subs in self._watching.values():
            for sub in subs:
                sub.queue.put_nowait(None)

    def _type(self, key: TypeKey) -> ResourceType | None:
        return next((t for t in self.registry if t.key == key), None)


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _comparable(obj: Obj) -> Obj:
    meta = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k not in ("managedFields", "resourceVersion")
    }
    return {
        **{k: v for k, v in obj.items() if k not in ("metadata", "apiVersion")},
        "metadata": meta,
    }
