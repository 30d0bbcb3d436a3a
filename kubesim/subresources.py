"""The subresources beyond `status`: `scale` (autoscaling/v1 Scale) and a pod's `log`.

`kubectl scale` reads and patches a workload's Scale; `requested_replicas`
checks the new Scale a client sent (a number ≥ 0, the resourceVersion it read)
and says how many replicas it asks for. A pod's log is two lines saying what it
runs and where its metrics are: kubesim runs no containers.
"""

from __future__ import annotations

from typing import Any

from kubesim import errors
from kubesim.patches import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, json_patch, merge_patch
from kubesim.selectors import from_label_selector_object, to_query
from kubesim.store import Obj
from kubesim.targets import Target

__all__ = ["pod_log", "requested_replicas", "to_scale"]


def to_scale(obj: Obj) -> Obj:
    """The autoscaling/v1 Scale of a workload."""
    meta = obj["metadata"]
    selector = from_label_selector_object((obj.get("spec") or {}).get("selector"))
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": int((obj.get("spec") or {}).get("replicas", 1))},
        "status": {
            "replicas": int((obj.get("status") or {}).get("replicas", 0)),
            "selector": to_query(selector),
        },
    }


def requested_replicas(
    target: Target, existing: Obj, method: str, content_type: str, body: Any
) -> int:
    """The replicas a PUT or PATCH of `existing`'s Scale asks for, or the Status error."""
    scale = to_scale(existing)
    if method == "PUT":
        new_scale = body
    elif content_type == JSON_PATCH:
        new_scale = json_patch(scale, body)
    elif content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        new_scale = merge_patch(scale, body)
    else:
        raise errors.unsupported_media_type(content_type)
    if not isinstance(new_scale, dict):
        raise errors.bad_request("a Scale must be an object")
    replicas = (new_scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise errors.invalid(
            "Scale",
            "autoscaling",
            target.name,
            [
                errors.Cause(
                    "spec.replicas",
                    f"Invalid value: {replicas}: must be greater than or equal to 0",
                )
            ],
        )
    expect_rv = (new_scale.get("metadata") or {}).get("resourceVersion")
    if expect_rv and expect_rv != existing["metadata"]["resourceVersion"]:
        raise errors.stale(target.rtype.plural, target.rtype.group, target.name)
    return replicas


def pod_log(pod: Obj, pod_name: str, container: str | None) -> str:
    """What `kubectl logs` shows for the pod's `container` (default: its first)."""
    containers = (pod.get("spec") or {}).get("containers") or []
    wanted = container or (containers[0]["name"] if containers else "")
    image = next((c.get("image", "") for c in containers if c.get("name") == wanted), "")
    lines = [
        f"kubesim: container {wanted} of pod {pod_name} runs {image}",
        f"kubesim: serving simulated traffic; metrics on {pod['status'].get('podIP', '')}"
        f":{(pod['metadata'].get('annotations') or {}).get('prometheus.io/port', '')}/metrics",
    ]
    return "\n".join(lines) + "\n"
