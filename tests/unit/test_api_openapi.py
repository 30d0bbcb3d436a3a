"""The OpenAPI document is generated from the route table and the wire Structs' JSON Schema."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from services.api.auth import Access
from services.api.openapi import openapi_for
from services.api.routes import Answer, Route, all_routes


class WidgetQuery(msgspec.Struct, frozen=True, kw_only=True):
    colour: Annotated[str | None, Meta(description="Only widgets of this colour.")] = None
    tag: Annotated[tuple[str, ...], Meta(description="Any of these tags.")] = ()
    limit: Annotated[int, Meta(ge=1, le=10, description="Page size.")] = 5


class WidgetRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A widget to make."""

    name: Annotated[str, Meta(max_length=20)]


class Widget(msgspec.Struct, frozen=True, kw_only=True):
    """A widget."""

    widget_id: str
    name: str


async def _handler(_request: web.Request) -> web.Response:
    return web.Response()


def test_a_route_added_to_the_table_is_documented_with_no_other_edit() -> None:
    """A new Route, with its query, body and answer Structs, appears whole in the document."""
    route = Route(
        "POST",
        "/widgets/{widget}/twin",
        _handler,
        "twinWidget",
        Access.WRITE,
        summary="Make a widget's twin",
        tag="widgets",
        answers=(Answer(201, "Made.", Widget),),
        errors=(404,),
        query=WidgetQuery,
        body=WidgetRequest,
    )
    document = openapi_for((*all_routes(), route))
    operation = document["paths"]["/widgets/{widget}/twin"]["post"]
    assert operation["operationId"] == "twinWidget"
    assert operation["summary"] == "Make a widget's twin"
    assert operation["tags"] == ["widgets"]
    assert "widgets" in [t["name"] for t in document["tags"]]
    assert operation["parameters"] == [
        {
            "name": "widget",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        },
        {
            "name": "colour",
            "in": "query",
            "required": False,
            "description": "Only widgets of this colour.",
            "schema": {"type": "string"},
        },
        {
            "name": "tag",
            "in": "query",
            "required": False,
            "description": "Any of these tags.",
            "schema": {"type": "array", "items": {"type": "string"}},
            "style": "form",
            "explode": True,
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "Page size.",
            "schema": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5},
        },
    ]
    assert operation["requestBody"] == {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WidgetRequest"}}},
    }
    assert set(operation["responses"]) == {"201", "401", "403", "404", "413"}
    schemas = document["components"]["schemas"]
    assert schemas["Widget"]["required"] == ["widget_id", "name"]
    assert schemas["WidgetRequest"]["properties"]["name"] == {"type": "string", "maxLength": 20}
    assert "WidgetQuery" not in schemas  # its fields are parameters, not a body


def test_a_public_route_needs_no_key() -> None:
    """`Access.PUBLIC` is an empty `security` and no 401/403 answers."""
    route = Route(
        "GET", "/ping", _handler, "ping", Access.PUBLIC, summary="Ping", tag="meta",
        answers=(Answer(200, "Pong.", None),),
    )  # fmt: skip
    operation = openapi_for((route,))["paths"]["/ping"]["get"]
    assert operation["security"] == []
    assert set(operation["responses"]) == {"200"}
