"""API keys: the creation request, the key as listed, and the one answer that shows the secret."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

KeyRole = Literal["read-only", "read-write", "admin"]


class CreateApiKeyRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A new key: read-only may GET, read-write may also command, admin may also manage keys."""

    role: KeyRole
    name: Annotated[
        str, Meta(pattern=r"^[A-Za-z0-9@._-]{0,63}$", description="Who uses it; default: its id.")
    ] = ""


class ApiKeyResource(msgspec.Struct, frozen=True, kw_only=True):
    """A key, never with its secret."""

    key_id: str
    name: str
    role: KeyRole
    created_at: datetime
    creator: str
    revoked: bool
    revoked_at: datetime | None
    revoker: str


class CreatedApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """The new key and its secret: shown this once, never stored."""

    key: ApiKeyResource
    secret: str


class ApiKeyList(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /api-keys`: every key (without secrets)."""

    items: list[ApiKeyResource]
