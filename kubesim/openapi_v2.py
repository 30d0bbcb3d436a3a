"""`/openapi/v2`: a minimal Swagger 2.0 document, as JSON or as gnostic protobuf.

kubectl up to 1.28 decides whether the server validates fields by fetching
`/openapi/v2` in protobuf (gnostic's `openapi.v2.Document`) and looking for a
PATCH operation carrying the kind's `x-kubernetes-group-version-kind` and a
`fieldValidation` query parameter; without it, `kubectl apply` fails with
"error validating data". Newer kubectl asks `/openapi/v3` first (see
`discovery`). The document holds only those operations — no schemas — so
kubectl falls back to its compiled-in types for patches, as it does on any
server whose OpenAPI lacks a kind.

The protobuf is encoded by hand (field numbers from gnostic's
`OpenAPIv2.proto`): five message types do not justify a generated module.
"""

from __future__ import annotations

from typing import Any

import yaml

from kubesim.resources import Registry, ResourceType

# kubectl asks for `…spec.v2@v1.0+protobuf`, but Go's mime parser rejects the `@` in a
# response's Content-Type, so the real server answers with a dot instead.
PROTOBUF_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
QUERY_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "force")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field (string or embedded message)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _flag(number: int) -> bytes:
    return _varint(number << 3) + _varint(1)


def _paths(registry: Registry) -> list[tuple[str, ResourceType, str, str]]:
    out = []
    for rtype in sorted(registry, key=lambda t: (t.group, t.plural)):
        for version in rtype.versions:
            prefix = f"/apis/{rtype.group}/{version}" if rtype.group else f"/api/{version}"
            scope = "/namespaces/{namespace}" if rtype.namespaced else ""
            out.append((f"{prefix}{scope}/{rtype.plural}/{{name}}", rtype, rtype.group, version))
    return out


def _gvk_yaml(group: str, version: str, kind: str) -> str:
    return str(yaml.safe_dump({"group": group, "kind": kind, "version": version}))


def document_protobuf(registry: Registry) -> bytes:
    """The OpenAPI v2 document in protobuf (what older kubectl versions request), field by field."""
    path_items = b""
    for path, rtype, group, version in _paths(registry):
        parameters = b""
        for name in QUERY_PARAMETERS:
            query = _field(2, "query") + _field(4, name) + _field(6, "string") + _flag(20)
            non_body = _field(3, query)  # NonBodyParameter.query_parameter_sub_schema
            parameter = _field(2, non_body)  # Parameter.non_body_parameter
            parameters += _field(8, _field(1, parameter))  # Operation.parameters[].parameter
        response = _field(1, _field(1, "OK"))  # ResponseValue.response.description
        responses = _field(1, _field(1, "200") + _field(2, response))
        extension = _field(1, "x-kubernetes-group-version-kind") + _field(
            2, _field(2, _gvk_yaml(group, version, rtype.kind))
        )
        operation = (
            _field(5, f"patch{rtype.kind}")
            + parameters
            + _field(9, responses)
            + _field(13, extension)
        )
        path_items += _field(2, _field(1, path) + _field(2, _field(8, operation)))
    info = _field(1, "Kubernetes (kubesim)") + _field(2, "unversioned")
    return _field(1, "2.0") + _field(2, info) + _field(8, path_items)


def document_json(registry: Registry) -> dict[str, Any]:
    """The OpenAPI v2 document as JSON, with the same PATCH operations as the protobuf form."""
    paths = {}
    for path, rtype, group, version in _paths(registry):
        paths[path] = {
            "patch": {
                "operationId": f"patch{rtype.kind}",
                "parameters": [
                    {"name": name, "in": "query", "type": "string", "uniqueItems": True}
                    for name in QUERY_PARAMETERS
                ],
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-group-version-kind": {
                    "group": group,
                    "version": version,
                    "kind": rtype.kind,
                },
            }
        }
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes (kubesim)", "version": "unversioned"},
        "paths": paths,
        "definitions": {},
    }
