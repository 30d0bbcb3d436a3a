"""`/api-keys`: make, list and revoke API keys (admin only)."""

from __future__ import annotations

import re
from typing import Final

from aiohttp import web

from services.api.auth import Access, actor_of
from services.api.decider import StateConflict, TargetNotFound
from services.api.deps import deps
from services.api.routes import API_PREFIX, Answer, Route
from services.api.routes.applications import metadata_of
from services.api.schemas import ApiKeyList, ApiKeyResource, CreateApiKeyRequest, CreatedApiKey
from services.api.wire import json_response, read_body
from shared.apikeys import ApiKey, KeyNameTaken, create_key, list_api_keys, revoke_api_key

__all__ = ["ROUTES"]

_KEY_ID: Final = re.compile(r"[0-9a-z]{26}")


def resource(key: ApiKey) -> ApiKeyResource:
    return ApiKeyResource(
        key_id=key.key_id,
        name=key.name,
        role=key.role,
        created_at=key.created_at,
        creator=key.creator,
        revoked=key.revoked,
        revoked_at=key.revoked_at,
        revoker=key.revoker,
    )


async def create(request: web.Request) -> web.Response:
    body = await read_body(request, CreateApiKeyRequest)
    try:
        key, secret = await create_key(
            deps(request).store,
            role=body.role,
            name=body.name,
            creator=actor_of(request) or "",
            metadata=metadata_of(request),
        )
    except KeyNameTaken as exc:
        raise StateConflict("name_taken", str(exc)) from exc
    return json_response(
        CreatedApiKey(key=resource(key), secret=secret),
        status=201,
        headers={"Location": f"{API_PREFIX}/api-keys/{key.key_id}"},
    )


async def list_(request: web.Request) -> web.Response:
    keys = await list_api_keys(deps(request).store)
    return json_response(ApiKeyList(items=[resource(k) for k in keys]))


async def revoke(request: web.Request) -> web.Response:
    key_id = request.match_info["key_id"]
    if not _KEY_ID.fullmatch(key_id):  # not an id: it cannot name a stream either
        raise TargetNotFound(f"no API key {key_id!r}")
    key = await revoke_api_key(
        deps(request).store, key_id, revoker=actor_of(request) or "", metadata=metadata_of(request)
    )
    if key is None:
        raise TargetNotFound(f"no API key {key_id!r}")
    return json_response(resource(key))


ROUTES: Final = (
    Route(
        "POST",
        "/api-keys",
        create,
        "createApiKey",
        Access.ADMIN,
        summary="Make an API key (admin)",
        tag="api-keys",
        answers=(Answer(201, "Made.", CreatedApiKey),),
        errors=(400, 409, 503),
        description="The answer carries the secret, this once; only its SHA-256 is "
        "stored. A key's name is its holder's identity (the approver of WAIT_APPROVAL "
        "stages): 409 `name_taken` while a live key has it (a revoked key frees it).",
        body=CreateApiKeyRequest,
    ),
    Route(
        "GET",
        "/api-keys",
        list_,
        "listApiKeys",
        Access.ADMIN,
        summary="Every API key, revoked ones too (admin)",
        tag="api-keys",
        answers=(Answer(200, "The keys.", ApiKeyList),),
        errors=(503,),
    ),
    Route(
        "DELETE",
        "/api-keys/{key_id}",
        revoke,
        "revokeApiKey",
        Access.ADMIN,
        summary="Revoke an API key (admin)",
        tag="api-keys",
        answers=(Answer(200, "Revoked.", ApiKeyResource),),
        errors=(404, 503),
        description="It stops working within a few seconds in every API replica.",
    ),
)
