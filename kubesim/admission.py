"""What a write from a client must pass before the store sees it.

A body of a media type the server reads (JSON, the patch types, YAML for
server-side apply), an object whose apiVersion, kind, namespace and name agree
with the path, a namespace that exists and is not terminating, defaults and
validation of the kind, and a `managedFields` entry for the field manager.
"""

from __future__ import annotations

import json
from typing import Any, Final

import yaml
from aiohttp import web

from kubesim import errors, protobuf
from kubesim.apply import record_update
from kubesim.patches import APPLY_PATCH, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH
from kubesim.resources import Registry
from kubesim.store import Obj, Store
from kubesim.targets import Target
from kubesim.validation import apply_defaults, validate

_YAML_TYPES: Final = frozenset({APPLY_PATCH, "application/yaml", "application/x-yaml", "text/yaml"})
_JSON_TYPES: Final = frozenset(
    {"", "application/json", MERGE_PATCH, JSON_PATCH, STRATEGIC_MERGE_PATCH, "text/plain"}
)


async def read_body(request: web.Request) -> Any:
    """The request's body decoded by its media type; None when empty."""
    ctype = request.content_type.lower()
    raw = await request.read()
    if not raw:
        return None
    try:
        if ctype in _YAML_TYPES:
            return yaml.safe_load(raw)
        if ctype in _JSON_TYPES:
            return json.loads(raw)
        if ctype == protobuf.PROTOBUF:
            return protobuf.decode(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"invalid request body: {exc}") from exc
    raise errors.unsupported_media_type(ctype)


def admit(
    target: Target,
    obj: Obj,
    old: Obj | None,
    request: web.Request,
    *,
    record: bool = True,
) -> None:
    """Defaults, validation and managedFields, for every write from a client."""
    rtype = target.rtype
    obj["apiVersion"] = rtype.api_version()
    obj["kind"] = rtype.kind
    meta = obj.setdefault("metadata", {})
    if rtype.namespaced:
        meta["namespace"] = target.namespace
    else:
        meta.pop("namespace", None)
    apply_defaults(rtype, obj)
    validate(rtype, obj, old)
    validation = request.query.get("fieldValidation", "")
    if validation not in ("", "Ignore", "Warn", "Strict"):
        raise errors.bad_request(
            f"fieldValidation {validation!r} is not one of Ignore, Warn, Strict"
        )
    if record:
        record_update(old, obj, field_manager(request))


def check_identity(target: Target, obj: Any) -> None:
    """Refuse a body that is not an object or names another version, kind, namespace or name."""
    if not isinstance(obj, dict):
        raise errors.bad_request("the request body must be a JSON object")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    expected = target.rtype.api_version(target.version)
    if api_version and api_version != expected and api_version != target.rtype.api_version():
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected"
            f" API version ({expected})"
        )
    if kind and kind != target.rtype.kind:
        raise errors.bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({target.rtype.kind})"
        )
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    namespace = (meta or {}).get("namespace")
    if target.rtype.namespaced and namespace and namespace != target.namespace:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    name = (meta or {}).get("name")
    if target.name and name and name != target.name:
        raise errors.bad_request(
            f"the name of the object ({name}) does not match the name on the URL ({target.name})"
        )


def require_namespace(store: Store, registry: Registry, target: Target) -> None:
    """Refuse to create in a namespace that does not exist or is being terminated."""
    if not target.rtype.namespaced:
        return
    namespaces = registry.by_plural("", "v1", "namespaces")
    assert namespaces is not None
    ns = store.peek(namespaces, "", target.namespace)
    if ns is None:
        raise errors.not_found("namespaces", "", target.namespace)
    if ns["metadata"].get("deletionTimestamp"):
        raise errors.ApiError(
            403,
            "Forbidden",
            f"{target.rtype.plural} is forbidden: unable to create new content in namespace"
            f" {target.namespace} because it is being terminated",
        )


def field_manager(request: web.Request) -> str:
    """Who writes: the `fieldManager` parameter, else the client's User-Agent product."""
    if manager := request.query.get("fieldManager"):
        return manager
    agent = request.headers.get("User-Agent", "unknown")
    return agent.split("/")[0][:128] or "unknown"
