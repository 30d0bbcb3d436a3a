"""API keys (stream `apikey-<key_id>`, owned by the api service)."""

from __future__ import annotations

from shared.events.base import Event
from shared.events.vocabulary import (
    KeyRole,
)


class ApiKeyCreated(Event, tag="api_key_created", frozen=True):
    """An API key exists; only the SHA-256 of its secret is recorded, never the secret."""

    key_id: str
    name: str
    role: KeyRole
    secret_sha256: str  # hex
    creator: str = ""


class ApiKeyRevoked(Event, tag="api_key_revoked", frozen=True):
    """The key no longer authenticates anyone (the API notices within seconds)."""

    key_id: str
    revoker: str = ""
