"""Reading requests and writing answers: JSON bodies, query parameters, encoded resources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeVar

import msgspec
from aiohttp import web

from services.api.deps import deps
from services.api.errors import ErrorReply, validation_error
from shared.http import BodyTooLarge, read_capped

__all__ = [
    "json_response",
    "query_bool",
    "query_int",
    "query_labels",
    "query_str",
    "read_body",
]

T = TypeVar("T")

_encoder: Final = msgspec.json.Encoder()
_TRUE: Final = frozenset({"true", "1", "yes"})
MAX_INT: Final = 2**63 - 1
"""PostgreSQL's bigint: anything larger cannot be a position, version or cursor."""
_FALSE: Final = frozenset({"false", "0", "no"})


async def read_body(request: web.Request, type_: type[T], *, optional: bool = False) -> T:
    """The JSON body decoded as `type_`; 400 naming the field at fault otherwise.

    With `optional`, an empty body stands for `{}` (every field defaulted).
    A body over the API's cap is refused (413) without reading the rest.
    """
    limit = deps(request).max_body_bytes
    try:
        raw = await read_capped(request, limit)
    except BodyTooLarge as exc:
        raise ErrorReply(413, "payload_too_large", str(exc)) from None
    if not raw.strip():
        if not optional:
            raise ErrorReply(400, "invalid_json", "the request needs a JSON object as its body")
        raw = b"{}"
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from exc
    except msgspec.DecodeError as exc:
        raise ErrorReply(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc


def json_response(
    value: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer encoded by msgspec (structs, enums and datetimes as the API documents)."""
    return web.Response(
        status=status,
        body=_encoder.encode(value),
        content_type="application/json",
        headers=headers,
    )


def query_str(request: web.Request, name: str, *, max_length: int = 256) -> str | None:
    """The query parameter `name` (at most once), or None when absent."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ErrorReply(400, "invalid_request", f"{name} may be given once", field=name)
    if not values:
        return None
    if len(values[0]) > max_length:
        raise ErrorReply(
            400, "invalid_request", f"{name} is longer than {max_length} characters", field=name
        )
    if "\x00" in values[0]:
        # PostgreSQL text cannot hold NUL, and no name or id contains one.
        raise ErrorReply(400, "invalid_request", f"{name} contains a NUL character", field=name)
    return values[0]


def query_int(request: web.Request, name: str, *, ge: int, le: int = MAX_INT) -> int | None:
    """An integer query parameter from `ge` to `le`, or None when absent; 400 naming it if not."""
    raw = query_str(request, name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < ge or value > le:
        bounds = f"from {ge} to {le}"
        raise ErrorReply(400, "invalid_request", f"{name} must be an integer {bounds}", field=name)
    return value


def query_bool(request: web.Request, name: str) -> bool | None:
    """A boolean query parameter (`true`, `1`, `yes` or their opposites), or None when absent."""
    raw = query_str(request, name)
    if raw is None:
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ErrorReply(400, "invalid_request", f"{name} must be true or false", field=name)


def query_labels(request: web.Request, name: str = "label") -> dict[str, str]:
    """Every `name=key=value` parameter, as a mapping (all must match)."""
    labels: dict[str, str] = {}
    for item in request.query.getall(name, []):
        if "\x00" in item:
            raise ErrorReply(400, "invalid_request", f"{name} contains a NUL character", field=name)
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ErrorReply(
                400, "invalid_request", f"{name} must look like key=value, not {item!r}", field=name
            )
        if labels.get(key, value) != value:
            raise ErrorReply(
                400, "invalid_request", f"{name} gives two values for {key!r}", field=name
            )
        labels[key] = value
    return labels
