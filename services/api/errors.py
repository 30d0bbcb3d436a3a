"""How failures become answers: `ErrorReply`, and the translation of the error tree into HTTP.

Every error answer has the body `{"error": {"code", "message", "field"?}}`
(`schemas.ErrorBody`):

| raised                                       | status  | code                          |
|----------------------------------------------|---------|-------------------------------|
| `ErrorReply`                                 | its own | its own                       |
| `decider.InvalidCommand` (names the field)   | 400     | `invalid_request`             |
| `decider.TargetNotFound`                     | 404     | `not_found`                   |
| `decider.StateConflict`                      | 409     | its code (`name_taken`, …)    |
| `ConcurrencyConflict` (retries used up)      | 409     | `conflict`                    |
| `Unavailable`                                | 503     | `unavailable` + `Retry-After` |
| aiohttp's own (no route, wrong method)       | its own | `not_found`, …                |
| anything else: a bug, logged once            | 500     | `internal`                    |

A 5xx answer carries the request's id (`error.request_id`, also the
`X-Request-Id` header), and the error is logged once with that id; its
message never quotes an exception or a driver (which name hosts, schemas,
SQL): the id leads an operator from the answer to the logged cause.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from services.api.decider import RULES, InvalidCommand, StateConflict, TargetNotFound
from services.api.middleware import REQUEST_ID
from services.api.schemas import ErrorBody, ErrorCode, ErrorDetail
from shared.errors import ConcurrencyConflict, SlipwayError, Unavailable
from shared.logs import get_logger

__all__ = ["ErrorReply", "error_middleware", "error_response", "validation_error"]

log = get_logger(__name__)

RETRY_AFTER_S: Final = "1"

_encoder = msgspec.json.Encoder()

# msgspec's validation messages end with where the problem is, e.g.
# "Expected `str` of length <= 63 - at `$.name`" or "... - at `key` in `$.labels`".
_AT: Final = re.compile(r" - at (?:`key` in )?`\$(?P<path>[^`]*)`$")
_NAMED: Final = re.compile(r"(?:missing required|contains unknown) field `(?P<name>[^`]+)`")
_INDEX: Final = re.compile(r"\[[^\]]*\]")
# Messages about a value's shape rather than its type, better said by the field's rule.
_RULE_BROKEN: Final = re.compile(r"matching regex|of length|length [<>]=")

_HTTP_CODES: Final[Mapping[int, ErrorCode]] = {404: "not_found", 405: "method_not_allowed"}


class ErrorReply(SlipwayError):
    """An answer other than success, raised anywhere below a handler."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        application_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.detail = ErrorDetail(
            code=code, message=message, field=field, application_id=application_id
        )
        self.headers = dict(headers or {})
        super().__init__(message)


def error_response(error: ErrorReply, request_id: str | None = None) -> web.Response:
    """The answer for `error`; a 5xx also names `request_id` (for finding it in the log)."""
    if error.status >= 500 and request_id is not None:
        error.detail = msgspec.structs.replace(error.detail, request_id=request_id)
    return web.Response(
        status=error.status,
        body=_encoder.encode(ErrorBody(error=error.detail)),
        content_type="application/json",
        headers=error.headers,
    )


def validation_error(exc: msgspec.ValidationError, *, prefix: str = "") -> ErrorReply:
    """A 400 naming the field msgspec found at fault (dotted, under `prefix`)."""
    message = str(exc)
    path = ""
    if at := _AT.search(message):
        path = _INDEX.sub("", at["path"]).lstrip(".")
        message = message[: at.start()]
    if named := _NAMED.search(message):
        path = f"{path}.{named['name']}" if path else named["name"]
    field = ".".join(part for part in (prefix, path) if part) or None
    rule = RULES.get(path.split(".", 1)[0]) if path else None
    if rule is not None and _RULE_BROKEN.search(message):
        message = f"{field} is not valid: {rule}"
    elif field is not None:
        message = f"{field}: {message}"
    return ErrorReply(400, "invalid_request", message, field=field)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the API's JSON error body with the request's id."""
    request_id = request.get(REQUEST_ID)
    try:
        return await handler(request)
    except ErrorReply as exc:
        return error_response(exc, request_id)
    except InvalidCommand as exc:
        return error_response(ErrorReply(400, "invalid_request", str(exc), field=exc.field))
    except TargetNotFound as exc:
        return error_response(ErrorReply(404, "not_found", str(exc)))
    except StateConflict as exc:
        return error_response(
            ErrorReply(409, exc.code, str(exc), application_id=exc.application_id)
        )
    except ConcurrencyConflict as exc:
        return error_response(
            ErrorReply(409, "conflict", f"too many concurrent changes, try again: {exc}")
        )
    except Unavailable as exc:
        # The cause (a driver's text) goes to the log only, under the request's id.
        log.warning("request_unavailable", error=str(exc))
        message = "a dependency (database or messaging) is unavailable; retry shortly"
        return error_response(
            ErrorReply(503, "unavailable", message, headers={"Retry-After": RETRY_AFTER_S}),
            request_id,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "invalid_request")
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(ErrorReply(exc.status, code, exc.reason, headers=headers))
    # The top of request handling: a bug is logged once with its traceback and
    # answered as such, without the details that would leak internals.
    except Exception:
        log.exception("request_crashed", method=request.method, path=request.path)
        message = f"internal error; the API's log has it under request id {request_id}"
        return error_response(ErrorReply(500, "internal", message), request_id)
