"""`/openapi.json`: the API's own description."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from services.api.auth import Access
from services.api.openapi import openapi_document
from services.api.routes import Answer, Route

__all__ = ["ROUTES"]


async def openapi(_: web.Request) -> web.Response:
    return web.Response(body=openapi_document(), content_type="application/json")


ROUTES: Final = (
    Route(
        "GET",
        "/openapi.json",
        openapi,
        "getOpenApi",
        Access.PUBLIC,
        summary="This document",
        tag="meta",
        answers=(Answer(200, "The OpenAPI 3.1 document.", None),),
    ),
)
