"""`/openapi.json` and `/asyncapi.json`: the API's own description, and the event contract."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from services.api.auth import Access
from services.api.openapi import openapi_document
from services.api.routes import Answer, Route
from shared.events.asyncapi import asyncapi_json

__all__ = ["ROUTES"]


async def openapi(_: web.Request) -> web.Response:
    return web.Response(body=openapi_document(), content_type="application/json")


async def asyncapi(_: web.Request) -> web.Response:
    return web.Response(body=asyncapi_json(), content_type="application/json")


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
    Route(
        "GET",
        "/asyncapi.json",
        asyncapi,
        "getAsyncApi",
        Access.PUBLIC,
        summary="The event contract",
        tag="meta",
        answers=(
            Answer(
                200,
                "The AsyncAPI 3.0 document of Slipway's events (docs/events.md: versioning, "
                "the replay window, formats).",
                None,
            ),
        ),
    ),
)
