"""The body of every error answer, and the closed set of its codes."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

ErrorCode = Literal[
    "invalid_request",
    "invalid_json",
    "ambiguous_id",
    "not_found",
    "method_not_allowed",
    "name_taken",
    "already_registered",
    "application_disabled",
    "config_taken",
    "repository_not_watched",
    "conflict",
    "refused",
    "unauthorized",
    "forbidden",
    "payload_too_large",
    "too_many_streams",
    "projection_lagging",
    "unavailable",
    "internal",
]


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What went wrong: a stable code, a message, and the field at fault."""

    code: ErrorCode
    message: str
    field: Annotated[
        str | None, Meta(description="The request field at fault, for validation errors.")
    ] = None
    application_id: Annotated[
        str | None, Meta(description="The application a conflict is about, when there is one.")
    ] = None
    request_id: Annotated[
        str | None,
        Meta(description="A server error's request id: the API's log has the cause under it."),
    ] = None


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every error answer has this body."""

    error: ErrorDetail
