"""Drift: does what runs in the cluster still match the manifests at the git head?

Pure: the live objects and the rendered head manifests go in, a `DriftResult`
comes out. The rules are PipeCD's live-state drift detection:

- a key that exists only in the live object is ignored (`status`, `uid`,
  `resourceVersion`, labels Slipway adds, fields the API server defaults), so
  the live object is first cut down to the shape of the head manifest; list
  items the live object has beyond the head's are kept (a container added by
  hand is drift);
- otherwise fields compare as in plan preview (`shared.planning.diff`): null,
  missing and empty are equal, numbers equal numeric strings, Secret values
  are masked;
- `driftDetection.ignoreFields` entries (`apiVersion:kind:namespace:name#a.b.0.c`)
  and the annotation `pipecd.dev/ignore-drift-detection: "true"` (on the live
  object or the manifest) take a field or a whole resource out of the check;
- a head manifest with no live object, or a live object the head no longer
  has, is drift too.

An application whose `resourceRoutes` spread it over several clusters is compared
cluster by cluster (`detect_drift_across`): an object on the wrong cluster is
missing on one and extra on the other, and the diff says which platform provider
each difference is on (`# 1. Deployment web on edge`), as the same object may be
on several.

The diff reads as the change a sync would make: old = live, new = head.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from shared.planning.diff import (
    DEFAULT_OPTIONS,
    ManifestDiff,
    ManifestLike,
    PathStep,
    ResourceChange,
    ResourceKey,
    diff_resource,
    key_of,
)

__all__ = [
    "IGNORE_ANNOTATION",
    "DriftResult",
    "SyncState",
    "detect_drift",
    "detect_drift_across",
    "parse_ignore_field",
]

SyncState = Literal["SYNCED", "OUT_OF_SYNC"]

IGNORE_ANNOTATION: Final = "pipecd.dev/ignore-drift-detection"
SYNCED_SUMMARY: Final = "live state matches git"

# Kinds that live outside namespaces: an input namespace never applies to them.
_CLUSTER_SCOPED: Final = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
    }
)


@dataclass(frozen=True)
class DriftResult:
    """The drift judge's answer: the sync state, a one-line summary and the diff."""

    state: SyncState
    summary: str
    """One line: `image web: hacked → v1` or `live state matches git`."""
    diff: str
    """Every drifted resource and field, Secret values masked ("" when synced)."""
    manifest_diff: ManifestDiff = field(default_factory=ManifestDiff)


@dataclass(frozen=True)
class _Body:
    """A ManifestLike with a body of our own (a live object cut to the head's shape)."""

    api_version: str
    kind: str
    name: str
    namespace: str
    body: Mapping[str, Any]


def parse_ignore_field(entry: str) -> tuple[tuple[str, str, str, str], tuple[PathStep, ...]]:
    """`apps/v1:Deployment:default:web#spec.replicas` → ((apiVersion, kind, ns, name), path)."""
    target, _, path = entry.partition("#")
    parts = target.split(":")
    if len(parts) != 4 or not path:
        raise ValueError(f"expected 'apiVersion:kind:namespace:name#fieldPath', got {entry!r}")
    api_version, kind, namespace, name = parts
    steps: tuple[PathStep, ...] = tuple(
        int(step) if step.isdigit() else step for step in path.split(".")
    )
    return (api_version, kind, _ns(namespace), name), steps


def detect_drift(
    head: Sequence[ManifestLike],
    live: Sequence[ManifestLike],
    *,
    namespace: str = "",
    ignore_fields: Sequence[str] = (),
) -> DriftResult:
    """Compare the live objects with the head manifests (`namespace`: the app's input namespace)."""
    return detect_drift_across([("", head, live)], namespace=namespace, ignore_fields=ignore_fields)


def detect_drift_across(
    clusters: Sequence[tuple[str, Sequence[ManifestLike], Sequence[ManifestLike]]],
    *,
    namespace: str = "",
    ignore_fields: Sequence[str] = (),
) -> DriftResult:
    """`detect_drift` of each cluster's (platform provider, head manifests routed to it, live
    objects read from it), as one result: every cluster's added, removed and changed
    resources; with more than one cluster, each resource of the diff text is followed by
    ` on <provider>`."""
    diffs = [
        (provider, _diff(head, live, namespace, ignore_fields)) for provider, head, live in clusters
    ]
    diff = ManifestDiff(
        tuple(entry for _, d in diffs for entry in d.added),
        tuple(entry for _, d in diffs for entry in d.removed),
        tuple(change for _, d in diffs for change in d.changed),
    )
    if diff.no_change:
        return DriftResult("SYNCED", SYNCED_SUMMARY, "", diff)
    if len(diffs) == 1:
        return DriftResult("OUT_OF_SYNC", diff.summary, diff.render(), diff)
    parts: list[str] = []
    first = 1
    for provider, part in diffs:
        if not part.no_change:
            parts.append(part.render(first=first, where=f" on {provider}"))
            first += part.size
    return DriftResult("OUT_OF_SYNC", diff.summary, "\n".join(parts), diff)


def _diff(
    head: Sequence[ManifestLike],
    live: Sequence[ManifestLike],
    namespace: str,
    ignore_fields: Sequence[str],
) -> ManifestDiff:
    ignored: dict[tuple[str, str, str, str], list[tuple[PathStep, ...]]] = {}
    for entry in ignore_fields:
        target, path = parse_ignore_field(entry)
        ignored.setdefault(target, []).append(path)
    wanted = {_key(m, namespace): m for m in head}
    running = {key_of(m): m for m in live}
    skipped = {k for side in (wanted, running) for k, m in side.items() if _ignores_drift(m)}
    added = tuple(
        (k, wanted[k].api_version) for k in sorted(wanted.keys() - running.keys() - skipped)
    )
    removed = tuple(
        (k, running[k].api_version) for k in sorted(running.keys() - wanted.keys() - skipped)
    )
    changed: list[ResourceChange] = []
    for key in sorted((wanted.keys() & running.keys()) - skipped):
        desired = wanted[key]
        desired_body = _folded(desired)
        shaped = _Body(
            desired.api_version,
            desired.kind,
            desired.name,
            key.namespace,
            _shape(running[key].body, desired_body),
        )
        target = (desired.api_version, desired.kind, key.namespace, desired.name)
        options = replace(
            DEFAULT_OPTIONS,
            ignored_paths=(*DEFAULT_OPTIONS.ignored_paths, *ignored.get(target, ())),
        )
        fields = diff_resource(
            shaped,
            _Body(desired.api_version, desired.kind, desired.name, key.namespace, desired_body),
            options,
        )
        if fields:
            changed.append(ResourceChange(key, desired.api_version, tuple(fields)))
    return ManifestDiff(added, removed, tuple(changed))


def _ns(namespace: str) -> str:
    return "" if namespace == "default" else namespace


def _key(manifest: ManifestLike, namespace: str) -> ResourceKey:
    key = key_of(manifest)
    if manifest.kind in _CLUSTER_SCOPED:
        return replace(key, namespace="")
    return replace(key, namespace=_ns(namespace or manifest.namespace))


def _ignores_drift(manifest: ManifestLike) -> bool:
    metadata = manifest.body.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping):
        return False
    return str(annotations.get(IGNORE_ANNOTATION, "")).lower() == "true"


def _folded(manifest: ManifestLike) -> Mapping[str, Any]:
    """A Secret's `stringData` as the `data` the server stores; other bodies as they are."""
    body = manifest.body
    if manifest.kind != "Secret" or not isinstance(body.get("stringData"), Mapping):
        return body
    data = dict(body.get("data") or {})
    for key, value in body["stringData"].items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    return {**{k: v for k, v in body.items() if k != "stringData"}, "data": data}


def _shape(live: Any, desired: Any) -> Any:
    """`live` without the map keys `desired` does not have, recursively."""
    if isinstance(live, Mapping) and isinstance(desired, Mapping):
        return {k: _shape(v, desired[k]) for k, v in live.items() if k in desired}
    if isinstance(live, list | tuple) and isinstance(desired, list | tuple):
        return [_shape(v, desired[i]) if i < len(desired) else v for i, v in enumerate(live)]
    return live
