"""The three PATCH formats: JSON merge patch, JSON patch, and strategic merge patch.

- `application/merge-patch+json` (RFC 7386): maps merge, `null` deletes, lists replace.
- `application/json-patch+json` (RFC 6902): add/remove/replace/move/copy/test operations.
- `application/strategic-merge-patch+json`: what `kubectl apply` (client-side)
  and typed clients send for built-in kinds. Lists of objects with a merge
  key merge element by element (containers, env and volumes by `name`,
  container ports by `containerPort`, Service ports by `port`, conditions by
  `type`…); `finalizers` merges as a set; every other list is replaced. The
  directives kubectl emits are honoured: `$patch: replace|delete|merge`,
  `$retainKeys`, `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.

`patch_object` picks the format by the request's media type. Server-side apply
(`application/apply-patch+yaml`) is not a patch of this kind: see `apply`.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from kubesim import errors
from kubesim.errors import ApiError

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"

# The patchMergeKey tags of the Kubernetes API types that matter to workloads.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
}
_SET_LISTS = frozenset({"finalizers"})
_DELETE = object()


def patch_object(
    existing: dict[str, Any], patch: Any, content_type: str, *, custom: bool
) -> dict[str, Any]:
    """`existing` with `patch` of the media type `content_type` applied; `custom` for a
    custom resource, which has no strategic merge (no Go types to read merge keys from)."""
    if content_type == MERGE_PATCH:
        patched = merge_patch(existing, patch)
    elif content_type == JSON_PATCH:
        patched = json_patch(existing, patch)
    elif content_type == STRATEGIC_MERGE_PATCH:
        if custom:
            raise errors.ApiError(
                415,
                "UnsupportedMediaType",
                "strategic merge patch is not supported for custom resources;"
                " use a JSON merge patch",
            )
        if not isinstance(patch, dict):
            raise errors.bad_request("a strategic merge patch must be a JSON object")
        patched = strategic_merge(existing, patch)
    else:
        raise errors.unsupported_media_type(content_type)
    if not isinstance(patched, dict):
        raise errors.bad_request("the patch did not produce an object")
    return patched


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns a new value and leaves `target` untouched."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a strategic merge patch to an object; returns a new object."""
    merged = _merge_map(original, patch)
    return {} if merged is _DELETE else merged


def _merge_map(original: dict[str, Any], patch: dict[str, Any]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _merge_map({}, {k: v for k, v in patch.items() if k != "$patch"})
    result = copy.deepcopy(original)
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            merged = _merge_map(current if isinstance(current, dict) else {}, value)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = value
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(field, result[field], order)
    if isinstance(patch.get("$retainKeys"), list):
        keep = set(patch["$retainKeys"])
        result = {k: v for k, v in result.items() if k in keep}
    return result


def merge_key(field: str, items: list[Any]) -> str | None:
    """The key a strategic merge patch merges `field`'s items by; None replaces the list."""
    if field == "ports":
        # Container ports merge by containerPort, Service ports by port.
        if any(isinstance(i, dict) and "containerPort" in i for i in items):
            return "containerPort"
        return "port"
    return _MERGE_KEYS.get(field)


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_fresh(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    current_list = current if isinstance(current, list) else []
    if field in _SET_LISTS and all(not isinstance(i, dict) for i in patch):
        return current_list + [i for i in patch if i not in current_list]
    key = merge_key(field, current_list + patch)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return [_fresh(i) for i in patch]
    result = copy.deepcopy(current_list)
    for item in patch:
        index = next(
            (
                n
                for n, e in enumerate(result)
                if isinstance(e, dict) and e.get(key) == item.get(key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_fresh(item))
        else:
            result[index] = _merge_map(result[index], item)
    return result


def _fresh(value: Any) -> Any:
    """A value new to the object, with any directives it carries resolved."""
    if isinstance(value, dict):
        merged = _merge_map({}, value)
        return {} if merged is _DELETE else merged
    return copy.deepcopy(value)


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = merge_key(field, items)

    def identity(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [identity(o) for o in order]
    ranked = {value: n for n, value in enumerate(wanted) if isinstance(value, (str, int))}
    indexed = list(enumerate(items))
    # Listed elements take their listed place; the rest keep their order after them.
    indexed.sort(key=lambda pair: ranked.get(identity(pair[1]), len(ranked) + pair[0]))
    return [item for _, item in indexed]


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; a failing operation is a 422 like the API server's."""
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    doc = copy.deepcopy(document)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError(400, "BadRequest", f"invalid JSON patch operation: {op!r}")
        try:
            doc = _apply_operation(doc, op)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request:"
                f" {op['op']} {op['path']}: {exc}",
            ) from exc
    return doc


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _get(doc: Any, path: str) -> Any:
    node = doc
    for token in _pointer(path):
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _apply_operation(doc: Any, op: dict[str, Any]) -> Any:
    kind, path = op["op"], op["path"]
    if kind == "test":
        if _get(doc, path) != op.get("value"):
            raise ValueError("test failed")
        return doc
    if kind in ("move", "copy"):
        value = copy.deepcopy(_get(doc, op["from"]))
        if kind == "move":
            doc = _apply_operation(doc, {"op": "remove", "path": op["from"]})
        return _apply_operation(doc, {"op": "add", "path": path, "value": value})
    tokens = _pointer(path)
    if not tokens:
        if kind == "remove":
            raise ValueError("cannot remove the whole document")
        return copy.deepcopy(op.get("value"))
    parent, last = _parent(doc, tokens), tokens[-1]
    if kind == "remove":
        if isinstance(parent, list):
            del parent[int(last)]
        else:
            del parent[last]
    elif kind in ("add", "replace"):
        value = copy.deepcopy(op.get("value"))
        if isinstance(parent, list):
            if kind == "add":
                index = len(parent) if last == "-" else int(last)
                if index > len(parent):
                    raise IndexError("index out of range")
                parent.insert(index, value)
            else:
                parent[int(last)] = value
        else:
            if kind == "replace" and last not in parent:
                raise KeyError(last)
            parent[last] = value
    else:
        raise ValueError(f"unknown operation {kind!r}")
    return doc
