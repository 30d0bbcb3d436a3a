"""The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json`: generated, never
written by hand.

Everything in it comes from two places: the route table (`routes/`: each
`Route` has its summary, tag, answers, error statuses and the Structs of its
query and body) and msgspec's JSON Schema of the wire Structs (`schemas/`),
which are also what requests are decoded into. So a route added to the table
is documented with no other edit, and the document cannot drift from what is
enforced.

A query Struct's fields become query parameters (an array field one given
several times, `?label=a=1&label=b=2`; an optional `X | None = None` field is
shown as X); a path's `{name}`s are described by `schemas.PATH_PARAMETERS`.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Final

import msgspec

from services.api.auth import Access
from services.api.routes import API_PREFIX, Answer, Route, all_routes
from services.api.schemas import PATH_PARAMETERS, ErrorBody

__all__ = ["openapi_document", "openapi_for"]

_VERSION: Final = "0.1.0"
_REF: Final = "#/components/schemas/{name}"

_ERRORS: Final = {
    400: "The request is malformed; `error.field` names the part at fault.",
    401: "No API key, or one that is unknown, malformed or revoked "
    "(`Authorization: Bearer <key>`).",
    403: "The key's role is too low for this (read-only < read-write < admin).",
    404: "No such resource.",
    409: "The application's state forbids this (`error.code` says why).",
    413: "The request body is larger than the API takes.",
    429: "This API key holds as many log follows as it may; retry after `Retry-After`.",
    503: "A dependency is unavailable, or the projection lags behind `min_position`; "
    "retry after `Retry-After` seconds.",
}

_TAGS: Final = {
    "applications": "Registered applications and their commands.",
    "deployments": "Deployments, their stages, logs and commands.",
    "chains": "Deployment chains (`postSync.chain`): blocks of deployments run in order.",
    "events": "The event log, and time travel over it.",
    "insights": "The four DORA metrics, from the event log.",
    "api-keys": "API keys (admin only).",
    "secrets": "Secrets encrypted for git (PipeCD's format).",
    "event-watcher": "Events whose values the event watcher writes into git (image updates).",
    "meta": "About the API itself.",
}

_PATH_NAME: Final = re.compile(r"{([^}]+)}")


@functools.cache
def openapi_document() -> bytes:
    """The document of the API's routes, encoded once."""
    return msgspec.json.encode(openapi_for(all_routes()))


def openapi_for(routes: tuple[Route, ...]) -> dict[str, Any]:
    """The OpenAPI document of `routes`."""
    structs: set[type] = {ErrorBody}
    for route in routes:
        structs |= {a.schema for a in route.answers if a.schema is not None}
        structs |= {t for t in (route.body, route.query) if t is not None}
    ordered = sorted(structs, key=lambda t: t.__name__)
    schemas, components = msgspec.json.schema_components(ordered, ref_template=_REF)
    query_schemas = dict(zip(ordered, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        query = _resolve(query_schemas[route.query], components) if route.query else None
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, query)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Slipway API",
            "version": _VERSION,
            "description": "Registrations and commands of Slipway, a GitOps CD orchestrator. "
            "Writes answer with the state their events produce and a log `position`; reads "
            "come from read models that follow the log closely, and wait for a `min_position`.",
        },
        "servers": [{"url": API_PREFIX}],
        "tags": [
            {"name": tag, "description": _TAGS.get(tag, "")}
            for tag in dict.fromkeys([*_TAGS, *(r.tag for r in routes)])
        ],
        "paths": paths,
        "security": [{"apiKey": []}],
        "components": {
            # Query Structs are parameters, not bodies: their own schemas are left out.
            "schemas": {
                name: schema
                for name, schema in components.items()
                if name not in {r.query.__name__ for r in routes if r.query is not None}
            },
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`slipway apikey create`): "
                    "`Authorization: Bearer slw_…`. Roles: read-only (GET), read-write "
                    "(+ commands and registrations), admin (+ keys and deletions).",
                }
            },
        },
    }


def _operation(route: Route, query: dict[str, Any] | None) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.name, "summary": route.summary}
    if route.description is not None:
        operation["description"] = route.description
    operation["tags"] = [route.tag]
    if route.access is Access.PUBLIC:
        operation["security"] = []
    parameters = [_path_parameter(name) for name in _PATH_NAME.findall(route.path)]
    if query is not None:
        parameters += _query_parameters(query)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": _json(_ref(route.body)),
        }
    operation["responses"] = _responses(route)
    return operation


def _responses(route: Route) -> dict[str, Any]:
    responses = {str(answer.status): _answer(answer) for answer in route.answers}
    errors = [] if route.access is Access.PUBLIC else [401, 403]
    errors += route.errors
    if route.body is not None:
        errors.append(413)  # every body is capped (`create_app(max_body_bytes=…)`)
    for status in errors:
        responses[str(status)] = {
            "description": _ERRORS[status],
            "content": _json(_ref(ErrorBody)),
        }
    return responses


def _answer(answer: Answer) -> dict[str, Any]:
    schema = _ref(answer.schema) if answer.schema is not None else {"type": "object"}
    content = _json(schema)
    if answer.event_stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    described: dict[str, Any] = {"description": answer.description, "content": content}
    if answer.headers:
        described["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in answer.headers.items()
        }
    return described


def _path_parameter(name: str) -> dict[str, Any]:
    known = PATH_PARAMETERS.get(name)
    parameter: dict[str, Any] = {"name": name, "in": "path", "required": True}
    if known is not None and known.description is not None:
        parameter["description"] = known.description
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if known is not None:
        schema["maxLength"] = known.max_length
    parameter["schema"] = schema
    return parameter


def _query_parameters(query: dict[str, Any]) -> list[dict[str, Any]]:
    """One parameter per property of a query Struct's schema."""
    parameters = []
    for name, property_ in query["properties"].items():
        schema = dict(property_)
        description = schema.pop("description", None)
        if schema.get("default") in (None, (), []):
            schema.pop("default", None)  # "not given", which is no value a query can send
        any_of = schema.get("anyOf")
        if any_of is not None and {"type": "null"} in any_of:
            # `X | None = None`: optional, shown as X (a query cannot send null).
            (schema,) = [s for s in any_of if s != {"type": "null"}]
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": False}
        if description is not None:
            parameter["description"] = description
        parameter["schema"] = schema
        if schema.get("type") == "array":
            parameter |= {"style": "form", "explode": True}
        parameters.append(parameter)
    return parameters


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A `$ref` to a component, as the component itself."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = components[ref.rsplit("/", 1)[-1]]
    return resolved


def _ref(struct: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=struct.__name__)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}
