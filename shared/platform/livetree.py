"""An application's live objects as a tree: recorded from the cluster, nested for display.

Pure. The drift service hands `observe` the objects it read (those labelled for
the application and what their controllers made: ReplicaSets, Pods, Jobs, see
`KubernetesPlatform.live_tree`); the result is what
`ApplicationLiveResourcesObserved` records:

- **only named fields**: kind, namespace, name, uid, the owners' uids, health
  and a short reason, the creation time, and the platform provider it was read
  from (an application's `resourceRoutes` may spread it over several). A
  Secret's data, annotations, labels, env and the rest of a spec never enter
  (the objects come from a cluster other people write to: untrusted, and maybe
  secret). Every string is made printable and clipped (`_FIELD_CHARS`).
- **bounded**: at most `MAX_OBJECTS`, within `MAX_BYTES` encoded; owners before
  what they own (every Deployment and Service before a ReplicaSet, every
  ReplicaSet before a Pod), so what is cut is the leaves; `truncated` counts
  what was left out.
- **a digest** over what is recorded, so the service appends only when it
  differs from the newest recorded one (`changed`).

`shared.resourcetree.nest` turns a recorded list back into a forest for the
console and the CLI.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec

from shared.events.catalog import ApplicationLiveResourcesObserved, LiveResource
from shared.events.vocabulary import ResourceHealth
from shared.platform.resources import rollout_status
from shared.redaction import printable

__all__ = [
    "MAX_BYTES",
    "MAX_OBJECTS",
    "Listed",
    "changed",
    "health_of",
    "observe",
    "resource_of",
]

MAX_OBJECTS: Final = 500
"""Objects one event lists at most; the rest are counted in `truncated`."""
MAX_BYTES: Final = 256 * 1024
"""The listed objects' encoded size at most: half the log's cap on an event, whatever
names a cluster holds."""
_FIELD_CHARS: Final = 253
"""Longest string kept (a Kubernetes name's limit); longer ones are cut."""
_REASON_CHARS: Final = 120
_MAX_OWNERS: Final = 4
_ROLLOUT_KINDS: Final = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


def _text(value: object, limit: int = _FIELD_CHARS) -> str:
    if not isinstance(value, str):
        return ""
    # Cut before cleaning: a hostile megabyte name costs no more than a short one.
    return printable(value) if len(value) <= limit else printable(value[: limit - 1]) + "…"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(mapping: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = mapping.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def health_of(obj: Mapping[str, Any]) -> tuple[ResourceHealth, str]:
    """An object's health and why: workloads by their replicas, Pods by phase and
    readiness, Jobs by their conditions; other kinds are healthy by existing."""
    kind = obj.get("kind")
    try:
        if kind in _ROLLOUT_KINDS:
            return _rollout_health(obj)
        if kind == "ReplicaSet":
            return _replicaset_health(obj)
        if kind == "Pod":
            return _pod_health(obj)
        if kind == "Job":
            return _job_health(obj)
    except (TypeError, ValueError, AttributeError):
        return ResourceHealth.UNKNOWN, "unreadable status"
    return ResourceHealth.HEALTHY, ""


def _rollout_health(obj: Mapping[str, Any]) -> tuple[ResourceHealth, str]:
    status = rollout_status(dict(obj))
    counts = f"{status.ready}/{status.desired} ready"
    if status.healthy:
        return ResourceHealth.HEALTHY, counts
    if status.failed:
        return ResourceHealth.UNHEALTHY, f"{counts}, {status.condition_reason or 'failed'}"
    return ResourceHealth.PROGRESSING, counts


def _replicaset_health(obj: Mapping[str, Any]) -> tuple[ResourceHealth, str]:
    desired = _int(_mapping(obj.get("spec")), "replicas", 1)
    ready = _int(_mapping(obj.get("status")), "readyReplicas")
    counts = f"{ready}/{desired} ready"
    return (ResourceHealth.HEALTHY if ready >= desired else ResourceHealth.PROGRESSING), counts


def _pod_health(obj: Mapping[str, Any]) -> tuple[ResourceHealth, str]:
    status = _mapping(obj.get("status"))
    phase = _text(status.get("phase"), 20) or "Unknown"
    containers = [_mapping(c) for c in status.get("containerStatuses") or () if c]
    ready = sum(1 for c in containers if c.get("ready") is True)
    restarts = sum(_int(c, "restartCount") for c in containers)
    # A container's waiting reason is a CamelCase word the kubelet sets (CrashLoopBackOff,
    # ImagePullBackOff); its message, which may quote anything, is not kept.
    waiting = next(
        (
            _text(_mapping(_mapping(c.get("state")).get("waiting")).get("reason"), 40)
            for c in containers
            if _mapping(_mapping(c.get("state")).get("waiting")).get("reason")
        ),
        "",
    )
    reason = f"{phase}, {ready}/{len(containers)} ready"
    if restarts:
        reason += f", {restarts} restart{'s' if restarts != 1 else ''}"
    if waiting:
        reason += f", {waiting}"
    if phase == "Failed" or waiting.endswith("BackOff") or waiting == "ErrImagePull":
        return ResourceHealth.UNHEALTHY, reason
    if phase == "Succeeded" or (phase == "Running" and containers and ready == len(containers)):
        return ResourceHealth.HEALTHY, reason
    if phase in ("Pending", "Running"):
        return ResourceHealth.PROGRESSING, reason
    return ResourceHealth.UNKNOWN, reason


def _job_health(obj: Mapping[str, Any]) -> tuple[ResourceHealth, str]:
    status = _mapping(obj.get("status"))
    for condition in status.get("conditions") or ():
        condition = _mapping(condition)
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return ResourceHealth.HEALTHY, "complete"
        if condition.get("type") == "Failed":
            return ResourceHealth.UNHEALTHY, _text(condition.get("reason"), 40) or "failed"
    return ResourceHealth.PROGRESSING, f"{_int(status, 'active')} active"


def resource_of(
    api_version: str, kind: str, obj: Mapping[str, Any], *, provider: str = ""
) -> LiveResource:
    """The recorded form of one live object read from `provider`'s cluster: the named
    fields only, each clipped."""
    metadata = _mapping(obj.get("metadata"))
    refs = metadata.get("ownerReferences")
    owners = tuple(
        _text(ref.get("uid"), 64)
        for ref in (refs if isinstance(refs, list) else [])[:_MAX_OWNERS]
        if isinstance(ref, Mapping) and isinstance(ref.get("uid"), str)
    )
    health, reason = health_of({**obj, "kind": kind})
    return LiveResource(
        api_version=_text(api_version, 100),
        kind=_text(kind, 63),
        namespace=_text(metadata.get("namespace"), 63),
        name=_text(metadata.get("name")),
        uid=_text(metadata.get("uid"), 64),
        owners=owners,
        health=health,
        reason=_text(reason, _REASON_CHARS),
        created_at=_text(metadata.get("creationTimestamp"), 40),
        provider=_text(provider, 63),
    )


def _depths(resources: Sequence[LiveResource]) -> dict[str, int]:
    """How many owners above each object (by uid), among these objects; cycles stop."""
    by_uid = {r.uid: r for r in resources if r.uid}
    depths: dict[str, int] = {}
    for resource in resources:
        depth, seen, current = 0, {resource.uid}, resource
        while True:
            parent = next((by_uid[o] for o in current.owners if o in by_uid), None)
            if parent is None or parent.uid in seen:
                break
            seen.add(parent.uid)
            depth, current = depth + 1, parent
        depths[resource.uid] = depth
    return depths


Listed = Iterable[tuple[str, str, Mapping[str, Any]]]
"""(apiVersion, kind, object) of each object as one cluster listed it."""


def observe(
    application_id: str,
    objects: Listed | Mapping[str, Listed],
    *,
    max_objects: int = MAX_OBJECTS,
    max_bytes: int = MAX_BYTES,
) -> ApplicationLiveResourcesObserved:
    """The event recording `objects`, each provider's (provider → what its cluster
    listed) or one cluster's (its provider unsaid): owners first, at most `max_objects`
    within `max_bytes`, with its digest."""
    placed = objects if isinstance(objects, Mapping) else {"": objects}
    resources = [
        resource_of(api_version, kind, obj, provider=provider)
        for provider, listed in placed.items()
        for api_version, kind, obj in listed
    ]
    unique = list({(r.provider, r.kind, r.namespace, r.name, r.uid): r for r in resources}.values())
    depths = _depths(unique)
    unique.sort(
        key=lambda r: (depths.get(r.uid, 0), r.kind, r.namespace, r.name, r.provider, r.uid)
    )
    kept: list[LiveResource] = []
    size = 0
    for resource in unique:
        size += len(msgspec.json.encode(resource)) + 1
        if len(kept) >= max_objects or size > max_bytes:
            break
        kept.append(resource)
    truncated = len(unique) - len(kept)
    return ApplicationLiveResourcesObserved(
        application_id=application_id,
        resources=tuple(kept),
        truncated=truncated,
        digest=_digest(kept, truncated),
    )


def _digest(resources: Sequence[LiveResource], truncated: int) -> str:
    encoded = msgspec.json.encode([list(resources), truncated])
    return hashlib.sha256(encoded).hexdigest()


def changed(last_digest: str | None, observed: ApplicationLiveResourcesObserved) -> bool:
    """Whether `observed` differs from the newest recorded (None: nothing recorded yet)."""
    return last_digest != observed.digest
