"""What the REST API answers: JSON bodies, objects in the requested version, Tables, metadata.

kubectl asks for server-side printing (`Accept: …;as=Table`) or metadata only
(`as=PartialObjectMetadata[List]`); everything else gets the object as JSON,
with the `apiVersion` of the path it was asked for.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from kubesim.store import Obj
from kubesim.tables import to_table
from kubesim.targets import Target

__all__ = ["json_response", "list_response", "partial", "respond", "typed"]


def json_response(body: Any, status: int = 200) -> web.Response:
    """A compact JSON response (kubectl doesn't need indentation; big lists stay small)."""
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def typed(target: Target, obj: Obj) -> Obj:
    """`obj` with the `apiVersion` and `kind` of the path it was asked through."""
    return {
        **obj,
        "apiVersion": target.rtype.api_version(target.version),
        "kind": target.rtype.kind,
    }


def respond(request: web.Request, target: Target, obj: Obj, status: int = 200) -> web.Response:
    """One object, as JSON, a Table or PartialObjectMetadata, as the client asked."""
    obj = typed(target, obj)
    accept = request.headers.get("Accept", "")
    if "as=Table" in accept and request.method == "GET":
        include = request.query.get("includeObject", "Metadata")
        return json_response(
            to_table(
                target.rtype.kind,
                [obj],
                resource_version=obj["metadata"]["resourceVersion"],
                include=include,
            ),
            status,
        )
    if "as=PartialObjectMetadata" in accept and request.method == "GET":
        return json_response(partial(obj), status)
    return json_response(obj, status)


def list_response(
    request: web.Request, target: Target, items: list[Obj], resource_version: str
) -> web.Response:
    """A list of (typed) objects, as a `<Kind>List`, a Table or PartialObjectMetadataList."""
    accept = request.headers.get("Accept", "")
    if "as=Table" in accept:
        include = request.query.get("includeObject", "Metadata")
        return json_response(
            to_table(target.rtype.kind, items, resource_version=resource_version, include=include)
        )
    if "as=PartialObjectMetadataList" in accept:
        return json_response(
            {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": resource_version},
                "items": [partial(o) for o in items],
            }
        )
    return json_response(
        {
            "kind": target.rtype.list_kind,
            "apiVersion": target.rtype.api_version(target.version),
            "metadata": {"resourceVersion": resource_version},
            "items": items,
        }
    )


def partial(obj: Obj) -> Obj:
    """The object as `PartialObjectMetadata` (what metadata-only clients request)."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }
