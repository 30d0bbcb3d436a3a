"""Per-request context: a request id bound to every log line, one canonical line per request."""

from __future__ import annotations

import re
import time
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from shared.ids import new_id
from shared.logs import bind, get_logger

__all__ = ["REQUEST_ID", "REQUEST_ID_HEADER", "request_middleware"]

log = get_logger("slipway.api")

REQUEST_ID_HEADER: Final = "X-Request-Id"
REQUEST_ID: Final = web.RequestKey("request_id", str)
"""This request's id: the caller's `X-Request-Id` when sane, else a new one.

It becomes the `correlation_id` of every event the request appends.
"""

_SANE_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give each request an id (the client's if sane) and log one line when it ends."""
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = offered if _SANE_ID.fullmatch(offered) else new_id()
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    status = 500
    with bind(request_id=request_id):
        try:
            response = await handler(request)
            status = response.status
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            route = request.match_info.route.name
            log.info(
                "request_handled",
                method=request.method,
                path=request.path,
                route=route,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
