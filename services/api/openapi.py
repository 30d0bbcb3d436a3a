"""The OpenAPI 3.1 document of the API, served at `/api/v1/openapi.json`.

Component schemas are generated from the wire Structs (`schemas.py`), which
are also what requests are decoded into, so the document cannot drift from
what is enforced. Operations are written here by hand, one per `Route`,
with the same operationId; a test checks that every route is documented
and every documented operation is routed.
"""

from __future__ import annotations

import functools
from typing import Any, Final, get_args

import msgspec

from services.api.deployments import DeploymentResource
from services.api.routes import API_PREFIX
from services.api.schemas import (
    SYNC_STATES,
    ApiKeyList,
    ApiKeyResource,
    ApplicationDeletion,
    ApplicationList,
    ApplicationResource,
    CancelDeploymentRequest,
    CommandAccepted,
    CreateApiKeyRequest,
    CreatedApiKey,
    DeploymentList,
    DeploymentStatus,
    ErrorBody,
    EventList,
    LogList,
    PlanPreviewRequest,
    PlanPreviewResult,
    RegisterApplicationRequest,
    StreamState,
    SyncAccepted,
    SyncApplicationRequest,
)
from shared.analysis.judges import JUDGE_NAMES
from shared.analysis.rejudging import RejudgeReport

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
    DeploymentResource,
    DeploymentList,
    RejudgeReport,
    CancelDeploymentRequest,
    CommandAccepted,
    LogList,
    EventList,
    StreamState,
    CreateApiKeyRequest,
    CreatedApiKey,
    ApiKeyResource,
    ApiKeyList,
    PlanPreviewRequest,
    PlanPreviewResult,
)

_ERRORS: Final = {
    "400": "The request is malformed; `error.field` names the part at fault.",
    "401": "No API key, or one that is unknown, malformed or revoked "
    "(`Authorization: Bearer <key>`).",
    "403": "The key's role is too low for this (read-only < read-write < admin).",
    "404": "No such resource.",
    "409": "The application's state forbids this (`error.code` says why).",
    "413": "The request body is larger than the API takes.",
    "429": "This API key holds as many log follows as it may; retry after `Retry-After`.",
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
    for code in ("401", "403", *errors):
        responses[code] = {"description": _ERRORS[code], "content": _json(_ref("ErrorBody"))}
    return responses


def _recorded_responses(already: str) -> dict[str, Any]:
    """A request the executor acts on: 202 when recorded, 200 (`already`) when asked before."""
    return _responses(
        ("202", "Recorded; the executor acts on it.", "CommandAccepted"), "400", "404", "409", "503"
    ) | {"200": {"description": already, "content": _json(_ref("CommandAccepted"))}}


def _body(schema: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": _json(_ref(schema))}


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Any],
    *,
    description: str | None = None,
    security: list[Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One operation; what is None is left out (the keys keep the document's usual order)."""
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    if description is not None:
        operation["description"] = description
    operation["tags"] = [tag]
    if security is not None:
        operation["security"] = security
    if parameters is not None:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
        # Every body is capped (`create_app(max_body_bytes=…)`).
        responses = responses | {
            "413": {"description": _ERRORS["413"], "content": _json(_ref("ErrorBody"))}
        }
    operation["responses"] = responses
    return operation


def _path_param(name: str, max_length: int, description: str | None = None) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "path", "required": True}
    if description is not None:
        param["description"] = description
    param["schema"] = {"type": "string", "minLength": 1, "maxLength": max_length}
    return param


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
        **extra,
    }


def _limit(description: str, *, maximum: int, default: int) -> dict[str, Any]:
    return _query(
        "limit",
        description,
        {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
    )


def _list_query(name: str, description: str, items: dict[str, Any]) -> dict[str, Any]:
    """A query parameter given several times (`?label=a=1&label=b=2`)."""
    return _query(name, description, {"type": "array", "items": items}, style="form", explode=True)


_APPLICATION_PARAM: Final = _path_param("application", 63, "The application's id or its name.")
_DEPLOYMENT_PARAM: Final = _path_param(
    "deployment",
    64,
    "The deployment's id, or a unique prefix of it (at least 4 characters; 400 "
    "`ambiguous_id` naming candidates when several deployments start so).",
)
_STAGE_PARAM: Final = _path_param(
    "stage",
    128,
    "The stage's id within the deployment (e.g. `stage-2`), or its name (e.g. "
    "`WAIT_APPROVAL`) when only one stage has it (409 listing them otherwise).",
)
_STREAM_PARAM: Final = _path_param(
    "stream_id", 200, "`<category>-<id>`, e.g. `deployment-…`, `application-…`."
)

# Query texts longer than this are refused (services/api/wire.py).
_TEXT: Final = {"type": "string", "maxLength": 256}
_POSITION: Final = {"type": "integer", "minimum": 0}

_MIN_POSITION: Final = _query(
    "min_position",
    "Answer only once the read model has applied the event at this log "
    "position (a write's `position`): read-your-writes. Waits a bounded time, then 503.",
    _POSITION,
)


def _command(operation_id: str, summary: str, description: str) -> dict[str, Any]:
    return _operation(
        operation_id,
        summary,
        "applications",
        _responses(
            ("200", "The application, as the command left it.", "ApplicationResource"),
            "400",
            "404",
            "409",
            "503",
        ),
        description=description,
        parameters=[_APPLICATION_PARAM],
    )


def _paths() -> dict[str, Any]:
    return {
        "/applications": {
            "post": _operation(
                "registerApplication",
                "Register an application",
                "applications",
                _responses(
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
                description="Names are unique: registering a taken name answers 409 "
                "`name_taken` with the holder's id in `error.application_id`; so are config "
                "files: a second application on the same repository, path and config file "
                "answers 409 `config_taken`. With a control config, a repository or platform "
                "provider it does not have answers 400 naming the field, and so does a config "
                "file missing at the watched branch's head (unless `verify` is false).",
                body=_body("RegisterApplicationRequest"),
            ),
            "get": _operation(
                "listApplications",
                "List applications",
                "applications",
                _responses(("200", "A page of applications.", "ApplicationList"), "400", "503"),
                description="Ordered by name, from the `applications` read model, which is "
                "eventually consistent: pass `min_position` to see a write of yours.",
                parameters=[
                    _query("name", "Only the application of this name.", _TEXT),
                    _list_query(
                        "label",
                        "key=value; repeat for several (all must match).",
                        _TEXT | {"pattern": "^[^=]+=.*$"},
                    ),
                    _query(
                        "disabled",
                        "Only disabled (true) or enabled (false) ones.",
                        {"type": "boolean"},
                    ),
                    _query("repository_id", "Only those of this repository.", _TEXT),
                    _list_query(
                        "sync_state",
                        "Only those in these sync states (repeat, or comma-separate).",
                        {"type": "string", "enum": list(SYNC_STATES)},
                    ),
                    _limit("Page size.", maximum=1000, default=100),
                    _query("cursor", "`next_cursor` of the previous page.", _TEXT),
                    _MIN_POSITION,
                ],
            ),
        },
        "/applications/{application}": {
            "get": _operation(
                "getApplication",
                "Get an application by id or name",
                "applications",
                _responses(("200", "The application.", "ApplicationResource"), "400", "404", "503"),
                description="From the eventually consistent read model; see `min_position`.",
                parameters=[_APPLICATION_PARAM, _MIN_POSITION],
            ),
            "delete": _operation(
                "deleteApplication",
                "Delete an application",
                "applications",
                _responses(("200", "Deleted.", "ApplicationDeletion"), "400", "404", "503"),
                description="Records `ApplicationDeleted` and frees the name. With "
                "`cascade=true` the drift service deletes the live resources Slipway applied "
                "for it (label `slipway.dev/application`) and records the outcome on stream "
                "`drift-<application_id>`: `application_resources_deleted` (what it deleted) or "
                "`application_resources_deletion_failed` (reason, what is left; it retries); "
                "without, they keep running.",
                parameters=[
                    _APPLICATION_PARAM,
                    _query(
                        "cascade",
                        "Also delete its live resources.",
                        {"type": "boolean", "default": False},
                    ),
                ],
            ),
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
            "post": _operation(
                "syncApplication",
                "Deploy the branch head now",
                "applications",
                _responses(("202", "Sync requested.", "SyncAccepted"), "400", "404", "409", "503"),
                description="Records a sync request; the gitwatcher turns it into a "
                "deployment of the watched branch's head. A disabled application answers 409 "
                "`application_disabled`; one whose repository is not in the control config "
                "(nothing watches it) answers 409 `repository_not_watched`.",
                parameters=[_APPLICATION_PARAM],
                body=_body("SyncApplicationRequest", required=False),
            )
        },
        **_deployment_paths(),
        **_event_paths(),
        **_key_paths(),
        "/plan-preview": {
            "post": _operation(
                "planPreview",
                "What merging a branch would deploy",
                "deployments",
                _responses(("200", "The preview.", "PlanPreviewResult"), "400", "404", "503"),
                description="Fetches a control-config repository, finds the applications "
                "the head changes (the gitwatcher's rule) and plans each against the base "
                "branch: strategy, summary, stages and resource diff. Like `slipway "
                "plan-preview`, without a clone of your own. 503 when the API runs without "
                "a control config, or cannot fetch.",
                body=_body("PlanPreviewRequest"),
            )
        },
        "/openapi.json": {
            "get": _operation(
                "getOpenApi",
                "This document",
                "meta",
                {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": _json({"type": "object"}),
                    }
                },
                security=[],
            )
        },
        "/asyncapi.json": {
            "get": _operation(
                "getAsyncApi",
                "The event contract",
                "meta",
                {
                    "200": {
                        "description": "The AsyncAPI 3.0 document of Slipway's events "
                        "(docs/events.md: versioning, replay window, formats).",
                        "content": _json({"type": "object"}),
                    }
                },
                security=[],
            )
        },
    }


def _stage_command(operation_id: str, summary: str, description: str) -> dict[str, Any]:
    return _operation(
        operation_id,
        summary,
        "deployments",
        _recorded_responses("Asked already: nothing new recorded."),
        description=description,
        parameters=[_DEPLOYMENT_PARAM, _STAGE_PARAM],
    )


def _deployment_paths() -> dict[str, Any]:
    statuses = list(get_args(DeploymentStatus))
    return {
        "/deployments": {
            "get": _operation(
                "listDeployments",
                "List deployments, newest first",
                "deployments",
                _responses(("200", "A page of deployments.", "DeploymentList"), "400", "503"),
                description="From the `deployments` read model (eventually consistent).",
                parameters=[
                    _query("application", "Only this application's (id or name).", _TEXT),
                    _list_query(
                        "status",
                        "Only these statuses (repeat, or comma-separate).",
                        {"type": "string", "enum": statuses},
                    ),
                    _limit("Page size.", maximum=500, default=50),
                    _query(
                        "cursor",
                        "`next_cursor` of the previous page.",
                        {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    ),
                ],
            )
        },
        "/deployments/{deployment}": {
            "get": _operation(
                "getDeployment",
                "A deployment with its stages",
                "deployments",
                _responses(("200", "The deployment.", "DeploymentResource"), "400", "404", "503"),
                description="Folded from the deployment's own stream: always current. Its "
                "WAIT_APPROVAL stages say who may approve (`allowed_approvers`, empty: anyone) "
                "and how many approvals they still need (`approvals_needed`).",
                parameters=[_DEPLOYMENT_PARAM],
            )
        },
        "/deployments/{deployment}/logs": {
            "get": _operation(
                "getDeploymentLogs",
                "What its stages wrote",
                "deployments",
                _responses(("200", "The lines.", "LogList"), "400", "404", "429", "503")
                | {
                    "200": {
                        "description": "The lines (JSON), or with `follow` an event stream.",
                        "content": _json(_ref("LogList"))
                        | {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                description="With `follow=true`, server-sent events instead: `log` events "
                "(the stored lines, then live ones; `id` is the line's id), then one `end` "
                "event `{deployment_id, status}` once the deployment has completed; a "
                "`revoked` event ends it early once the key is revoked. A key may hold a "
                "few follows at once (`SLIPWAY_API_MAX_LOG_STREAMS_PER_KEY`): 429 beyond.",
                parameters=[
                    _DEPLOYMENT_PARAM,
                    _query(
                        "stage_id",
                        "Only this stage's lines: its id, or its name if no other stage has it.",
                        _TEXT,
                    ),
                    _query(
                        "follow",
                        "Stream as server-sent events until the deployment completes.",
                        {"type": "boolean", "default": False},
                    ),
                ],
            )
        },
        "/deployments/{deployment}/rejudge": {
            "get": _operation(
                "rejudgeDeployment",
                "Its analyses' verdicts recomputed from the recorded samples",
                "deployments",
                _responses(("200", "The report.", "RejudgeReport"), "400", "404", "503"),
                description="Every tick verdict of the deployment's ANALYSIS stages recomputed "
                "from the samples in the log, beside the recorded one (`slipway analysis "
                "rejudge`). `identical` is false when one differs (expected with another "
                "`judge`); `analyses` is empty when it has no ANALYSIS stage or was never planned.",
                parameters=[
                    _DEPLOYMENT_PARAM,
                    _query(
                        "judge",
                        "Judge comparisons with this judge (default: the one each analysis ran).",
                        {"type": "string", "enum": list(JUDGE_NAMES)},
                    ),
                ],
            )
        },
        "/deployments/{deployment}/cancel": {
            "post": _operation(
                "cancelDeployment",
                "Cancel a deployment",
                "deployments",
                _recorded_responses("Asked already: the first request stands."),
                description="Records `DeploymentCancelRequested`; the executor cancels the "
                "running stage and, with `rollback` (the default), rolls back. 409 when it has "
                "completed or is rolling back.",
                parameters=[_DEPLOYMENT_PARAM],
                body=_body("CancelDeploymentRequest", required=False),
            )
        },
        "/deployments/{deployment}/stages/{stage}/approve": {
            "post": _stage_command(
                "approveStage",
                "Approve a WAIT_APPROVAL stage",
                "Approves as the API key's name, which must be among the stage's `approvers` "
                "when it lists any. 409 when the stage is not waiting for approval.",
            )
        },
        "/deployments/{deployment}/stages/{stage}/skip": {
            "post": _stage_command(
                "skipStage",
                "Skip a WAIT, WAIT_APPROVAL or ANALYSIS stage",
                "Records `StageSkipRequested`; the executor ends the stage as SKIPPED.",
            )
        },
    }


def _event_paths() -> dict[str, Any]:
    return {
        "/events": {
            "get": _operation(
                "listEvents",
                "Events by position range, or a tail in commit order",
                "events",
                _responses(("200", "Events.", "EventList"), "400", "503"),
                description="`from_position`/`to_position` (inclusive) read a range by "
                "position; `after` (a `next_cursor`, or `head` for the newest) tails in commit "
                "order, missing nothing.",
                parameters=[
                    _query("from_position", "The first position.", _POSITION),
                    _query("to_position", "The last position.", _POSITION),
                    _query(
                        "after",
                        "`<tx_id>:<position>` from `next_cursor`, or `head`.",
                        {"type": "string", "pattern": "^(head|[0-9]{1,18}:[0-9]{1,18})$"},
                    ),
                    _query(
                        "category",
                        "Only streams of this category (`deployment`, …).",
                        {"type": "string", "maxLength": 64},
                    ),
                    _limit("At most this many.", maximum=1000, default=100),
                ],
            )
        },
        "/events/stream": {
            "get": _operation(
                "streamEvents",
                "Follow the event log as server-sent events",
                "events",
                _responses(("200", "An event stream.", "EventList"), "400", "429", "503")
                | {
                    "200": {
                        "description": "`text/event-stream`: one message per document, "
                        "`id` the event's cursor, `event` its type; `: heartbeat <cursor>` "
                        "comments while quiet.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                description="In commit order (the `after` tail's), from the beginning of "
                "the log, `after`, or the `Last-Event-ID` of a reconnect. `format` "
                "`native` (the event resource with its `cursor`), `cloudevents` (CloudEvents "
                "1.0 structured JSON) or `cdevents` (the CDEvents it maps to, docs/events.md). "
                "Counts against the key's streams, as log follows do.",
                parameters=[
                    _query(
                        "after",
                        "`<tx_id>:<position>` (an event's cursor), or `head`.",
                        {"type": "string", "pattern": "^(head|[0-9]{1,18}:[0-9]{1,18})$"},
                    ),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "The last cursor received: resume right after it.",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}:[0-9]{1,18}$"},
                    },
                    _query(
                        "category",
                        "Only these stream categories (comma-separated).",
                        {"type": "string", "maxLength": 2048},
                    ),
                    _query(
                        "type",
                        "Only these event types (comma-separated).",
                        {"type": "string", "maxLength": 2048},
                    ),
                    _query(
                        "application",
                        "Only events about this application (its id).",
                        {"type": "string", "maxLength": 128},
                    ),
                    _query(
                        "format",
                        "How each event is sent.",
                        {"type": "string", "enum": ["native", "cloudevents", "cdevents"]},
                    ),
                ],
            )
        },
        "/events/streams/{stream_id}": {
            "get": _operation(
                "getStreamEvents",
                "A stream's events in version order",
                "events",
                _responses(("200", "Its events.", "EventList"), "400", "503"),
                parameters=[
                    _STREAM_PARAM,
                    _query("from_version", "The first version.", _POSITION),
                    _query(
                        "after",
                        "Continue after this version (a page's `next_cursor`); "
                        "not with `from_version`.",
                        {"type": "integer", "minimum": -1, "maximum": 2**63 - 2},
                    ),
                    _limit("At most this many.", maximum=1000, default=100),
                ],
            )
        },
        "/events/streams/{stream_id}/state": {
            "get": _operation(
                "getStreamState",
                "Time travel: a stream's state as of a position or a time",
                "events",
                _responses(("200", "The state.", "StreamState"), "400", "503"),
                description="Folds the stream's events at or before `position` and at or "
                "before `at` (both when both are given; neither: now).",
                parameters=[
                    _STREAM_PARAM,
                    _query("position", "A global log position.", _POSITION),
                    _query(
                        "at",
                        "An ISO 8601 time with a zone.",
                        {"type": "string", "format": "date-time"},
                    ),
                ],
            )
        },
    }


def _key_paths() -> dict[str, Any]:
    return {
        "/api-keys": {
            "post": _operation(
                "createApiKey",
                "Make an API key (admin)",
                "api-keys",
                _responses(("201", "Made.", "CreatedApiKey"), "400", "409", "503"),
                description="The answer carries the secret, this once; only its SHA-256 is "
                "stored. A key's name is its holder's identity (the approver of WAIT_APPROVAL "
                "stages): 409 `name_taken` while a live key has it (a revoked key frees it).",
                body=_body("CreateApiKeyRequest"),
            ),
            "get": _operation(
                "listApiKeys",
                "Every API key, revoked ones too (admin)",
                "api-keys",
                _responses(("200", "The keys.", "ApiKeyList"), "503"),
            ),
        },
        "/api-keys/{key_id}": {
            "delete": _operation(
                "revokeApiKey",
                "Revoke an API key (admin)",
                "api-keys",
                _responses(("200", "Revoked.", "ApiKeyResource"), "404", "503"),
                description="It stops working within a few seconds in every API replica.",
                parameters=[_path_param("key_id", 64)],
            )
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
            {"name": "deployments", "description": "Deployments, their stages, logs and commands."},
            {"name": "events", "description": "The event log, and time travel over it."},
            {"name": "api-keys", "description": "API keys (admin only)."},
            {"name": "meta", "description": "About the API itself."},
        ],
        "paths": _paths(),
        "security": [{"apiKey": []}],
        "components": {
            "schemas": components,
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
    return msgspec.json.encode(document)
