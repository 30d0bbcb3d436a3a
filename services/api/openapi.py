"""The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json`.

Component schemas are generated from the wire Structs (`schemas.py`), which
are also what requests are decoded into, so the document cannot drift from
what is enforced. Operations are written here by hand, one per `Route`,
with the same operationId; a test checks that every route is documented
and every documented operation is routed.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import msgspec

from services.api.routes import API_PREFIX
from services.api.schemas import (
    ApplicationDeletion,
    ApplicationList,
    ApplicationResource,
    ErrorBody,
    RegisterApplicationRequest,
    SyncAccepted,
    SyncApplicationRequest,
)

__all__ = ["openapi_document"]

_VERSION: Final = "0.1.0"

_SCHEMA_TYPES: Final = (
    RegisterApplicationRequest,
    SyncApplicationRequest,
    ApplicationResource,
    ApplicationList,
    SyncAccepted,
    ApplicationDeletion,
    ErrorBody,
)

_ERRORS: Final = {
    "400": "The request is malformed; `error.field` names the part at fault.",
    "404": "No such application.",
    "409": "The application's state forbids this (`error.code` says why).",
    "503": "A dependency is unavailable, or the projection lags behind `min_position`; "
    "retry after `Retry-After` seconds.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(
    ok: tuple[str, str, str], *errors: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    status, description, schema = ok
    success: dict[str, Any] = {"description": description, "content": _json(_ref(schema))}
    if headers:
        success["headers"] = headers
    responses: dict[str, Any] = {status: success}
    for code in errors:
        responses[code] = {"description": _ERRORS[code], "content": _json(_ref("ErrorBody"))}
    return responses


_APPLICATION_PARAM: Final = {
    "name": "application",
    "in": "path",
    "required": True,
    "description": "The application's id or its name.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 63},
}

# Query texts longer than this are refused (services/api/wire.py).
_TEXT: Final = {"type": "string", "maxLength": 256}

_MIN_POSITION: Final = {
    "name": "min_position",
    "in": "query",
    "required": False,
    "description": "Answer only once the read model has applied the event at this log "
    "position (a write's `position`): read-your-writes. Waits a bounded time, then 503.",
    "schema": {"type": "integer", "minimum": 0},
}


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
        **extra,
    }


def _command(operation_id: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": ["applications"],
        "parameters": [_APPLICATION_PARAM],
        "responses": _responses(
            ("200", "The application, as the command left it.", "ApplicationResource"),
            "400",
            "404",
            "409",
            "503",
        ),
    }


def _paths() -> dict[str, Any]:
    return {
        "/applications": {
            "post": {
                "operationId": "registerApplication",
                "summary": "Register an application",
                "description": "Names are unique: registering a taken name answers 409 "
                "`name_taken` with the holder's id in `error.application_id`.",
                "tags": ["applications"],
                "requestBody": {
                    "required": True,
                    "content": _json(_ref("RegisterApplicationRequest")),
                },
                "responses": _responses(
                    ("201", "Registered.", "ApplicationResource"),
                    "400",
                    "409",
                    "503",
                    headers={
                        "Location": {
                            "description": "The new application's URL.",
                            "schema": {"type": "string"},
                        }
                    },
                ),
            },
            "get": {
                "operationId": "listApplications",
                "summary": "List applications",
                "description": "Ordered by name, from the `applications` read model, which is "
                "eventually consistent: pass `min_position` to see a write of yours.",
                "tags": ["applications"],
                "parameters": [
                    _query("name", "Only the application of this name.", _TEXT),
                    _query(
                        "label",
                        "key=value; repeat for several (all must match).",
                        {"type": "array", "items": _TEXT | {"pattern": "^[^=]+=.*$"}},
                        style="form",
                        explode=True,
                    ),
                    _query(
                        "disabled",
                        "Only disabled (true) or enabled (false) ones.",
                        {"type": "boolean"},
                    ),
                    _query("repository_id", "Only those of this repository.", _TEXT),
                    _query(
                        "limit",
                        "Page size.",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    ),
                    _query("cursor", "`next_cursor` of the previous page.", _TEXT),
                    _MIN_POSITION,
                ],
                "responses": _responses(
                    ("200", "A page of applications.", "ApplicationList"), "400", "503"
                ),
            },
        },
        "/applications/{application}": {
            "get": {
                "operationId": "getApplication",
                "summary": "Get an application by id or name",
                "description": "From the eventually consistent read model; see `min_position`.",
                "tags": ["applications"],
                "parameters": [_APPLICATION_PARAM, _MIN_POSITION],
                "responses": _responses(
                    ("200", "The application.", "ApplicationResource"), "400", "404", "503"
                ),
            },
            "delete": {
                "operationId": "deleteApplication",
                "summary": "Delete an application",
                "description": "Records `ApplicationDeleted` and frees the name. With "
                "`cascade=true` the drift service deletes the live resources Slipway applied "
                "for it (label `slipway.dev/application`); without, they keep running.",
                "tags": ["applications"],
                "parameters": [
                    _APPLICATION_PARAM,
                    _query(
                        "cascade",
                        "Also delete its live resources.",
                        {"type": "boolean", "default": False},
                    ),
                ],
                "responses": _responses(
                    ("200", "Deleted.", "ApplicationDeletion"), "400", "404", "503"
                ),
            },
        },
        "/applications/{application}/disable": {
            "post": _command(
                "disableApplication",
                "Disable an application",
                "It is no longer deployed. Disabling a disabled application changes nothing.",
            )
        },
        "/applications/{application}/enable": {
            "post": _command(
                "enableApplication",
                "Enable an application",
                "Enabling an enabled application changes nothing.",
            )
        },
        "/applications/{application}/sync": {
            "post": {
                "operationId": "syncApplication",
                "summary": "Deploy the branch head now",
                "description": "Records a sync request; the gitwatcher turns it into a "
                "deployment of the watched branch's head. A disabled application answers 409.",
                "tags": ["applications"],
                "parameters": [_APPLICATION_PARAM],
                "requestBody": {
                    "required": False,
                    "content": _json(_ref("SyncApplicationRequest")),
                },
                "responses": _responses(
                    ("202", "Sync requested.", "SyncAccepted"), "400", "404", "409", "503"
                ),
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "tags": ["meta"],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": _json({"type": "object"}),
                    }
                },
            }
        },
    }


@functools.cache
def openapi_document() -> bytes:
    """The document, encoded once."""
    _, components = msgspec.json.schema_components(
        _SCHEMA_TYPES, ref_template="#/components/schemas/{name}"
    )
    document = {
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
            {"name": "applications", "description": "Registered applications and their commands."},
            {"name": "meta", "description": "About the API itself."},
        ],
        "paths": _paths(),
        "components": {"schemas": components},
    }
    return msgspec.json.encode(document)
