"""Taking over what PipeCD deployed (`slipway app import`): the pure half.

PipeCD applies with a client-side `kubectl apply`: the fields it set are owned
by the field manager `kubectl-client-side-apply` (operation Update), and the
objects carry its annotations (`pipecd.dev/managed-by: piped`,
`pipecd.dev/application`, `pipecd.dev/commit-hash`, …) but no Slipway label.
Were Slipway simply to server-side apply over them, those fields would stay
co-owned by the old manager, and a field later deleted from git would never be
removed. So, as `kubectl apply --server-side` does when it meets an object a
client-side apply managed (client-go's `csaupgrade`), the client-side
managers' fields are handed to Slipway's `Apply` entry and their entries
dropped; the `slipway.dev/application` label is added in the same patch, which
also tests the object's `resourceVersion`, so a concurrent write fails it
rather than being overwritten.

`pipecd_objects` picks PipeCD's objects of one PipeCD application out of a
listing, `running_commit` says which commit they run, `takeover_patch` is the
JSON patch for one object. The platform adapter does the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from shared.errors import Rejected
from shared.platform.resources import (
    LABEL_APPLICATION,
    PIPECD_ANNOTATION_APPLICATION,
    PIPECD_ANNOTATION_COMMIT_HASH,
    PIPECD_ANNOTATION_MANAGED_BY,
    PIPECD_MANAGED_BY_PIPED,
)

__all__ = [
    "CLIENT_SIDE_MANAGERS",
    "AdoptionRefused",
    "pipecd_objects",
    "running_commit",
    "takeover_patch",
    "upgraded_managed_fields",
]

# The managers a client-side `kubectl apply` (and `kubectl create` before one) writes as.
CLIENT_SIDE_MANAGERS: Final = frozenset({"kubectl-client-side-apply", "before-first-apply"})


class AdoptionRefused(Rejected):
    """There is nothing to take over as asked (no objects, no running commit), said why."""


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations if isinstance(annotations, Mapping) else {}


def pipecd_objects(
    objects: Iterable[Mapping[str, Any]], pipecd_application_id: str
) -> list[Mapping[str, Any]]:
    """The objects piped applied for that PipeCD application (`pipecd.dev/managed-by: piped`,
    `pipecd.dev/application: <id>`)."""
    return [
        obj
        for obj in objects
        if _annotations(obj).get(PIPECD_ANNOTATION_MANAGED_BY) == PIPECD_MANAGED_BY_PIPED
        and _annotations(obj).get(PIPECD_ANNOTATION_APPLICATION) == pipecd_application_id
    ]


def running_commit(objects: Sequence[Mapping[str, Any]], given: str = "") -> str:
    """`given`, else the one `pipecd.dev/commit-hash` the objects carry; `AdoptionRefused`
    naming the hashes when they disagree, or saying none carries one."""
    if given:
        return given
    hashes: dict[str, int] = {}
    for obj in objects:
        commit = _annotations(obj).get(PIPECD_ANNOTATION_COMMIT_HASH)
        if isinstance(commit, str) and commit:
            hashes[commit] = hashes.get(commit, 0) + 1
    if len(hashes) == 1:
        return next(iter(hashes))
    if not hashes:
        raise AdoptionRefused(
            f"none of the {len(objects)} objects carries {PIPECD_ANNOTATION_COMMIT_HASH}: "
            "pass the running commit (--running-commit)"
        )
    seen = ", ".join(f"{commit[:12]} ({count} objects)" for commit, count in sorted(hashes.items()))
    raise AdoptionRefused(
        f"the objects carry different {PIPECD_ANNOTATION_COMMIT_HASH} values: {seen}; "
        "pass the running commit (--running-commit)"
    )


def _union(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(a)
    for key, value in b.items():
        merged[key] = _union(merged.get(key) or {}, value or {}) if key in merged else value
    return merged


def upgraded_managed_fields(
    entries: Sequence[Mapping[str, Any]], *, manager: str, api_version: str, time: str
) -> list[dict[str, Any]]:
    """`managedFields` with the client-side managers' fields (plus Slipway's label) moved
    into `manager`'s Apply entry, as `kubectl apply --server-side` upgrades an object."""
    taken: dict[str, Any] = {"f:metadata": {"f:labels": {f"f:{LABEL_APPLICATION}": {}}}}
    kept: list[dict[str, Any]] = []
    for entry in entries:
        name, operation = entry.get("manager"), entry.get("operation")
        if (name in CLIENT_SIDE_MANAGERS and operation == "Update") or (
            name == manager and operation == "Apply"
        ):
            taken = _union(taken, entry.get("fieldsV1") or {})
        else:
            kept.append(dict(entry))
    kept.append(
        {
            "manager": manager,
            "operation": "Apply",
            "apiVersion": api_version,
            "time": time,
            "fieldsType": "FieldsV1",
            "fieldsV1": taken,
        }
    )
    return kept


def takeover_patch(
    obj: Mapping[str, Any], *, application_id: str, manager: str, api_version: str, time: str
) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) that hands the object to `manager` and labels it."""
    metadata = obj.get("metadata") or {}
    fields = upgraded_managed_fields(
        metadata.get("managedFields") or (), manager=manager, api_version=api_version, time=time
    )
    label_key = LABEL_APPLICATION.replace("~", "~0").replace("/", "~1")
    patch: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": metadata["resourceVersion"]},
        {"op": "add", "path": "/metadata/managedFields", "value": fields},
    ]
    if metadata.get("labels"):
        patch.append(
            {"op": "add", "path": f"/metadata/labels/{label_key}", "value": application_id}
        )
    else:
        patch.append(
            {"op": "add", "path": "/metadata/labels", "value": {LABEL_APPLICATION: application_id}}
        )
    return patch
