"""`/openapi.json` and `/asyncapi.json`: the API's own description, and the event contract."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from services.api.auth import Access
from services.api.openapi import openapi_document
from services.api.routes import Route
from shared.events.asyncapi import asyncapi_json

__all__ = ["ROUTES"]


async def openapi(_: web.Request) -> web.Response:
    return web.Response(body=openapi_document(), content_type="application/json")


async def asyncapi(_: web.Request) -> web.Response:
    return web.Response(body=asyncapi_json(), content_type="application/json")


ROUTES: Final = (
    Route("GET", "/openapi.json", openapi, "getOpenApi", Access.PUBLIC),
    Route("GET", "/asyncapi.json", asyncapi, "getAsyncApi", Access.PUBLIC),
)
