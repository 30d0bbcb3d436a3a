"""Server-side apply and `managedFields`: who set which field.

Each write records its field manager in `metadata.managedFields` with the
fields it set, in the real `FieldsV1` encoding (`f:<field>`, `k:{"name":…}`
for keyed list elements, `v:<value>` for set elements, `.` for an element
itself). An apply (`PATCH` with `application/apply-patch+yaml`) merges the
applied configuration into the live object, and fields the same manager
applied last time but omits now are removed unless another manager also
owns them — which is how `kubectl apply --server-side` prunes a field.

A write that changes `managedFields` itself is taken as given, as the real
API server takes it: that is how `kubectl apply --server-side` hands the
fields a client-side apply (`kubectl-client-side-apply`) owned to its
server-side manager, so a field later dropped from the configuration is
removed rather than kept by the old owner.

Simplified: conflicts between managers are not detected (every apply acts
as if `force=true`, and fields another manager set stay theirs too: shared
ownership), and an update takes ownership of the fields it changed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from kubesim.patches import merge_key
from kubesim.store import Obj, now_rfc3339

Path = tuple[str, ...]

# Identity and bookkeeping: never owned by a manager.
_UNOWNED_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)
_SET_LISTS = frozenset({"finalizers"})


def field_paths(obj: Obj) -> set[Path]:
    """The leaf fields (and keyed list elements) an object sets."""
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _UNOWNED_METADATA}
    if meta:
        body["metadata"] = meta
    else:
        body.pop("metadata", None)
    return set(_walk(body, ()))


def _walk(value: Any, prefix: Path) -> Iterator[Path]:
    if isinstance(value, dict):
        if not value and prefix:
            yield prefix
        for key, child in value.items():
            yield from _walk(child, (*prefix, f"f:{key}"))
        return
    if isinstance(value, list) and prefix:
        field = prefix[-1][2:]
        if field in _SET_LISTS and all(not isinstance(v, (dict, list)) for v in value):
            for item in value:
                yield (*prefix, "v:" + json.dumps(item))
            return
        key = merge_key(field, value)
        if key and value and all(isinstance(v, dict) and key in v for v in value):
            for item in value:
                element = (*prefix, "k:" + json.dumps({key: item[key]}, separators=(",", ":")))
                yield element
                yield from _walk(item, element)
            return
    yield prefix


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    """Managed-field paths as a `fieldsV1` tree (`f:`/`k:` keys; `.` marks a list item itself)."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for step in path:
            node = node.setdefault(step, {})
        if path and path[-1].startswith("k:"):
            node["."] = {}
    return root


def from_fields_v1(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    """The managed-field paths a `fieldsV1` tree describes (the inverse of `to_fields_v1`)."""
    paths: set[Path] = set()
    for step, child in fields.items():
        if step == ".":
            paths.add(prefix)
            continue
        path = (*prefix, step)
        if not child:
            paths.add(path)
        else:
            paths |= from_fields_v1(child, path)
    return paths


def apply_merge(live: Any, applied: Any, field: str = "") -> Any:
    """Merge an applied configuration into the live object: maps and keyed lists merge."""
    if isinstance(applied, dict):
        base = live if isinstance(live, dict) else {}
        result = copy.deepcopy(base)
        for key, value in applied.items():
            result[key] = apply_merge(base.get(key), value, key)
        return result
    if isinstance(applied, list) and isinstance(live, list):
        if field in _SET_LISTS:
            return live + [v for v in applied if v not in live]
        key = merge_key(field, applied)
        if key and all(isinstance(v, dict) and key in v for v in applied + live):
            merged = []
            live_by_key = {json.dumps(v[key]): v for v in live}
            applied_keys = {json.dumps(v[key]) for v in applied}
            for item in applied:
                merged.append(apply_merge(live_by_key.get(json.dumps(item[key])), item, field))
            # Elements someone else added stay; pruning decides about ours.
            merged += [copy.deepcopy(v) for k, v in live_by_key.items() if k not in applied_keys]
            return merged
    return copy.deepcopy(applied)


def remove_path(obj: Obj, path: Path) -> None:
    """Delete one owned field (or list element) from an object; absent paths are ignored."""
    node: Any = obj
    for step in path[:-1]:
        node = _step(node, step)
        if node is None:
            return
    last = path[-1]
    if isinstance(node, dict) and last.startswith("f:"):
        node.pop(last[2:], None)
    elif isinstance(node, list):
        index = _index(node, last)
        if index is not None:
            del node[index]


def _step(node: Any, step: str) -> Any:
    if isinstance(node, dict) and step.startswith("f:"):
        return node.get(step[2:])
    if isinstance(node, list):
        index = _index(node, step)
        return node[index] if index is not None else None
    return None


def _index(items: list[Any], step: str) -> int | None:
    if step.startswith("k:"):
        want = json.loads(step[2:])
        for n, item in enumerate(items):
            if isinstance(item, dict) and all(item.get(k) == v for k, v in want.items()):
                return n
    elif step.startswith("v:"):
        value = json.loads(step[2:])
        if value in items:
            return items.index(value)
    return None


def _entries(obj: Obj) -> list[dict[str, Any]]:
    return list((obj.get("metadata") or {}).get("managedFields") or [])


def server_side_apply(live: Obj | None, applied: Obj, manager: str) -> Obj:
    """The object after `manager` applies `applied` to `live` (None when it does not exist)."""
    entries = _entries(live or {})
    previous: set[Path] = set()
    others: set[Path] = set()
    for entry in entries:
        paths = from_fields_v1(entry.get("fieldsV1") or {})
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            previous = paths
        else:
            others |= paths
    new_paths = field_paths(applied)
    result: Obj = apply_merge(live or {}, applied)
    for path in sorted(previous - new_paths - others, key=len):
        remove_path(result, path)
    kept = [
        e for e in entries if not (e.get("manager") == manager and e.get("operation") == "Apply")
    ]
    kept.append(_entry(manager, "Apply", applied.get("apiVersion", ""), new_paths))
    result.setdefault("metadata", {})["managedFields"] = kept
    return result


def record_update(old: Obj | None, new: Obj, manager: str) -> Obj:
    """Record a create/update/patch: `manager` now owns the fields it changed."""
    new_paths = field_paths(new)
    old_paths = field_paths(old) if old else set()
    changed = {p for p in new_paths if p not in old_paths or _value(new, p) != _value(old or {}, p)}
    entries = []
    mine: set[Path] = set()
    given = _entries(new)  # an empty list keeps the old entries, as on a real server
    baseline = (
        given if old is not None and given and given != _entries(old) else _entries(old or {})
    )
    for entry in baseline:
        paths = from_fields_v1(entry.get("fieldsV1") or {})
        if entry.get("manager") == manager and entry.get("operation") == "Update":
            mine = paths & new_paths
            continue
        remaining = (paths - changed) & new_paths
        if remaining:
            entries.append({**entry, "fieldsV1": to_fields_v1(remaining)})
    mine |= changed
    if mine:
        entries.append(_entry(manager, "Update", new.get("apiVersion", ""), mine))
    new.setdefault("metadata", {})["managedFields"] = entries
    return new


def _value(obj: Obj, path: Path) -> Any:
    node: Any = obj
    for step in path:
        node = _step(node, step)
        if node is None:
            return None
    return node


def _entry(manager: str, operation: str, api_version: str, paths: set[Path]) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(paths),
    }
