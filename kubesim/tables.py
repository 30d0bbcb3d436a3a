"""Server-side printing: the `meta.k8s.io/v1` Table `kubectl get` asks for.

kubectl sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,…` for
human-readable output and prints whatever columns the server returns. These
are the familiar columns for the kinds people look at; every other kind gets
NAME and AGE. Each row carries the object's metadata (or the whole object
with `includeObject=Object`) for `--show-labels` and sorting.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from kubesim.store import Obj

Column = tuple[str, str, Callable[[Obj], Any]]  # name, type, cell


def _age(obj: Obj) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    then = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    seconds = max(int((dt.datetime.now(dt.UTC) - then).total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _status(obj: Obj) -> dict[str, Any]:
    return obj.get("status") or {}


def _spec(obj: Obj) -> dict[str, Any]:
    return obj.get("spec") or {}


def _pod_ready(obj: Obj) -> str:
    statuses = _status(obj).get("containerStatuses") or []
    total = len(_spec(obj).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(obj: Obj) -> str:
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    for status in _status(obj).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
    return str(_status(obj).get("phase", "Pending"))


def _restarts(obj: Obj) -> int:
    return sum(int(s.get("restartCount", 0)) for s in _status(obj).get("containerStatuses") or [])


def _ports(obj: Obj) -> str:
    parts = []
    for port in _spec(obj).get("ports") or []:
        node = f":{port['nodePort']}" if port.get("nodePort") else ""
        parts.append(f"{port.get('port')}{node}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


_NAME: Column = ("Name", "string", _name)
_AGE: Column = ("Age", "string", _age)

_COLUMNS: dict[str, Sequence[Column]] = {
    "Pod": (
        _NAME,
        ("Ready", "string", _pod_ready),
        ("Status", "string", _pod_status),
        ("Restarts", "integer", _restarts),
        _AGE,
    ),
    "Deployment": (
        _NAME,
        (
            "Ready",
            "string",
            lambda o: f"{_status(o).get('readyReplicas', 0)}/{_spec(o).get('replicas', 1)}",
        ),
        ("Up-to-date", "integer", lambda o: _status(o).get("updatedReplicas", 0)),
        ("Available", "integer", lambda o: _status(o).get("availableReplicas", 0)),
        _AGE,
    ),
    "ReplicaSet": (
        _NAME,
        ("Desired", "integer", lambda o: _spec(o).get("replicas", 1)),
        ("Current", "integer", lambda o: _status(o).get("replicas", 0)),
        ("Ready", "integer", lambda o: _status(o).get("readyReplicas", 0)),
        _AGE,
    ),
    "Service": (
        _NAME,
        ("Type", "string", lambda o: _spec(o).get("type", "ClusterIP")),
        ("Cluster-IP", "string", lambda o: _spec(o).get("clusterIP", "<none>")),
        ("External-IP", "string", lambda _o: "<none>"),
        ("Port(s)", "string", _ports),
        _AGE,
    ),
    "Namespace": (_NAME, ("Status", "string", lambda o: _status(o).get("phase", "Active")), _AGE),
    "ConfigMap": (
        _NAME,
        ("Data", "integer", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
        _AGE,
    ),
    "Secret": (
        _NAME,
        ("Type", "string", lambda o: o.get("type", "Opaque")),
        ("Data", "integer", lambda o: len(o.get("data") or {})),
        _AGE,
    ),
    "Node": (
        _NAME,
        ("Status", "string", lambda _o: "Ready"),
        ("Roles", "string", lambda _o: "<none>"),
        _AGE,
        (
            "Version",
            "string",
            lambda o: (_status(o).get("nodeInfo") or {}).get("kubeletVersion", ""),
        ),
    ),
}


def columns_for(kind: str) -> Sequence[Column]:
    """The `kubectl get` columns for `kind` (name and age for kinds without their own)."""
    return _COLUMNS.get(kind, (_NAME, _AGE))


def to_table(kind: str, objects: Sequence[Obj], *, resource_version: str, include: str) -> Obj:
    """A `meta.k8s.io/v1` Table of `objects`, as `kubectl get` asks for it."""
    columns = columns_for(kind)
    rows = []
    for obj in objects:
        if include == "None":
            row_object = None
        elif include == "Object":
            row_object = obj
        else:
            row_object = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {},
            }
        rows.append({"cells": [cell(obj) for _, _, cell in columns], "object": row_object})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": type_,
                "format": "name" if name == "Name" else "",
                "description": name,
                "priority": 0,
            }
            for name, type_, _ in columns
        ],
        "rows": rows,
    }
