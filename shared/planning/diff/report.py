"""`ManifestDiff`, the result of a diff, and how a person reads it.

`render` lays it out as PipeCD's plan preview does, `to_dict` is what events
and the API carry, and `summary` is the one line read first (`image
helloworld: v1 → v2, +1 resource`): image and replica changes of workloads
are named, anything else is "<kind> <name> changed".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from shared.planning.diff.changes import MISSING, PathStep, ResourceChange, ResourceKey

__all__ = ["WORKLOAD_KINDS", "ManifestDiff", "image_name_and_version"]

WORKLOAD_KINDS: Final = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
)
"""Kinds that run containers: their image and replica changes get their own summary."""


_CONFIG_KINDS: Final = frozenset({"ConfigMap", "Secret"})
_MAX_SUMMARY_PARTS: Final = 6


@dataclass(frozen=True)
class ManifestDiff:
    """Resources added, removed and changed between an old and a new set of manifests."""

    added: tuple[tuple[ResourceKey, str], ...] = ()
    removed: tuple[tuple[ResourceKey, str], ...] = ()
    changed: tuple[ResourceChange, ...] = ()

    @property
    def no_change(self) -> bool:
        """Whether nothing was added, removed or changed."""
        return not (self.added or self.removed or self.changed)

    @property
    def summary(self) -> str:
        """One line a person reads first: `image helloworld: v1 → v2, +1 resource`."""
        return _summarise(self)

    def render(self, *, first: int = 1, where: str = "") -> str:
        """Every added, removed and changed resource, in PipeCD's plan-preview layout, numbered
        from `first`; `where` (e.g. ` on edge`) follows each resource's name, for a diff that
        is one cluster's part of several."""
        if self.no_change:
            return "No changes were detected\n"
        lines: list[str] = []
        index = first - 1
        for key, _ in self.removed:
            index += 1
            lines += [f"- {index}. {key}{where} (removed)", ""]
        for key, _ in self.added:
            index += 1
            lines += [f"+ {index}. {key}{where} (added)", ""]
        for change in self.changed:
            index += 1
            lines.append(f"# {index}. {change.key}{where}")
            lines += [f"  {f.render()}" for f in change.fields]
            lines.append("")
        return "\n".join(lines)

    @property
    def size(self) -> int:
        """How many resources were added, removed or changed."""
        return len(self.added) + len(self.removed) + len(self.changed)

    def counts(self) -> str:
        """`N added, N changed, N removed`."""
        return f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (plan previews and the API)."""

        def resource(key: ResourceKey, api_version: str) -> dict[str, str]:
            return {
                "api_version": api_version,
                "kind": key.kind,
                "namespace": key.namespace,
                "name": key.name,
            }

        return {
            "summary": self.summary,
            "added": [resource(k, v) for k, v in self.added],
            "removed": [resource(k, v) for k, v in self.removed],
            "changed": [
                {**resource(c.key, c.api_version), "fields": [f.to_dict() for f in c.fields]}
                for c in self.changed
            ],
        }


def image_name_and_version(image: str) -> tuple[str, str]:
    """(`helloworld`, `v1`) for `ghcr.io/pipe-cd/helloworld:v1`; a registry port is no tag."""
    name, _, digest = image.partition("@")
    last = name.rpartition("/")[2]
    base, _, tag = last.partition(":")
    if digest:
        return base, tag or digest.split(":", 1)[-1][:12]
    return base, tag or "latest"


def _summarise(diff: ManifestDiff) -> str:
    if diff.no_change:
        return "no changes"
    parts: list[str] = []
    for change in diff.changed:
        for part in _describe_change(change):
            if part not in parts:
                parts.append(part)
    if diff.added:
        parts.append(_count(len(diff.added), "+"))
    if diff.removed:
        parts.append(_count(len(diff.removed), "-"))
    if len(parts) > _MAX_SUMMARY_PARTS:
        hidden = len(parts) - (_MAX_SUMMARY_PARTS - 1)
        parts = [*parts[: _MAX_SUMMARY_PARTS - 1], f"and {hidden} more"]
    return ", ".join(parts)


def _describe_change(change: ResourceChange) -> list[str]:
    key = change.key
    if key.kind in _CONFIG_KINDS:
        return [f"{key.kind.lower()} {key.name} changed"]
    if key.kind not in WORKLOAD_KINDS:
        return [f"{key.kind.lower()} {key.name} changed"]
    parts: list[str] = []
    explained = 0
    for f in change.fields:
        if _is_image_path(f.path) and isinstance(f.old, str) and isinstance(f.new, str):
            parts.append(_describe_image(f.old, f.new))
            explained += 1
        elif f.path == ("spec", "replicas"):
            old = "unset" if f.old is MISSING or f.old is None else f.old
            new = "unset" if f.new is MISSING or f.new is None else f.new
            parts.append(f"replicas {key.name}: {old} → {new}")
            explained += 1
    if explained < len(change.fields):
        parts.append(f"{key.kind.lower()} {key.name} changed")
    return parts


def _is_image_path(path: tuple[PathStep, ...]) -> bool:
    return (
        len(path) >= 3
        and path[-1] == "image"
        and isinstance(path[-2], int)
        and path[-3] in ("containers", "initContainers")
    )


def _describe_image(old: str, new: str) -> str:
    old_name, old_version = image_name_and_version(old)
    new_name, new_version = image_name_and_version(new)
    if old_name == new_name:
        return f"image {new_name}: {old_version} → {new_version}"
    return f"image {old_name}:{old_version} → {new_name}:{new_version}"


def _count(n: int, sign: str) -> str:
    return f"{sign}{n} resource" + ("" if n == 1 else "s")
