"""Whether an application's live workloads are healthy, from the status the API server reports.

Pure: the drift service reads the live objects it already reads for drift and
asks `health_of`. A workload is healthy when its controller has seen its
latest spec (`status.observedGeneration` ≥ `metadata.generation`) and all its
replicas are updated and ready: Deployments and StatefulSets by
`updatedReplicas` and `readyReplicas` against `spec.replicas` (1 when
absent), DaemonSets by `updatedNumberScheduled` and `numberReady` against
`desiredNumberScheduled`. An application without workloads is healthy (there
is nothing to be unhealthy). The summary names the first unhealthy ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from shared.planning.diff.changes import ManifestLike

__all__ = ["Health", "health_of"]

_SHOWN: Final = 3


@dataclass(frozen=True)
class Health:
    """The verdict, and why (the first unhealthy workloads, or how many are fine)."""

    healthy: bool
    summary: str


def health_of(live: Sequence[ManifestLike]) -> Health:
    """The application's health: every workload among `live` updated and ready."""
    workloads = 0
    unhealthy: list[str] = []
    for obj in live:
        body: Mapping[str, Any] = obj.body
        problem = _problem(obj.kind, body)
        if problem is None:
            continue  # not a workload
        workloads += 1
        if problem:
            unhealthy.append(
                f"{obj.kind} {obj.namespace + '/' if obj.namespace else ''}{obj.name}: {problem}"
            )
    if unhealthy:
        more = f" (and {len(unhealthy) - _SHOWN} more)" if len(unhealthy) > _SHOWN else ""
        return Health(False, "; ".join(unhealthy[:_SHOWN]) + more)
    noun = "workload" if workloads == 1 else "workloads"
    return Health(True, f"{workloads} {noun} updated and ready" if workloads else "no workloads")


def _problem(kind: str, body: Mapping[str, Any]) -> str | None:
    """None for a kind that is no workload; "" for a healthy one; else what is wrong."""
    if kind not in ("Deployment", "StatefulSet", "DaemonSet"):
        return None
    status = _mapping(body.get("status"))
    generation = _int(_mapping(body.get("metadata")).get("generation"), 0)
    observed = _int(status.get("observedGeneration"), 0)
    if generation and observed < generation:
        return f"generation {generation} not observed yet"
    if kind == "DaemonSet":
        wanted = _int(status.get("desiredNumberScheduled"), 0)
        updated = _int(status.get("updatedNumberScheduled"), 0)
        ready = _int(status.get("numberReady"), 0)
    else:
        wanted = _int(_mapping(body.get("spec")).get("replicas"), 1)
        updated = _int(status.get("updatedReplicas"), 0)
        ready = _int(status.get("readyReplicas"), 0)
    if updated < wanted:
        return f"{updated}/{wanted} updated"
    if ready < wanted:
        return f"{ready}/{wanted} ready"
    return ""


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: object, default: int) -> int:
    # From a cluster: untrusted shapes are read as the default, never a crash.
    return value if isinstance(value, int) and not isinstance(value, bool) else default
