"""API keys: made, listed, revoked and checked through their event streams (`apikey-<key_id>`).

A key's secret looks like `slw_<key_id>_<43 random url-safe characters>`.
Carrying the key id inside the secret lets a check read exactly one short
stream (strongly consistent, no projection to wait for), and the random part
makes the secret unguessable. Only `sha256(secret)` is ever stored
(`ApiKeyCreated.secret_sha256`): the secret has 256 bits of entropy, so a
fast hash is enough — a slow password hash (bcrypt, argon2) exists to make
guessing low-entropy passwords expensive, and nobody can enumerate 2^256
candidates however fast the hash is. A fast hash also keeps every request's
check cheap.

Used by the API (its auth middleware and `/api-keys` endpoints), by
`slipway apikey create` (directly against the database, to make the first
admin key) and by the sandbox (`create_api_key`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Final, Literal, get_args

import asyncpg
import msgspec

from shared.db import unavailable_on_disconnect
from shared.decider import Functions
from shared.errors import Rejected
from shared.eventlog import NO_STREAM, EventStore
from shared.eventlog.envelope import envelope
from shared.eventlog.execute import execute
from shared.eventlog.store import Connection
from shared.events import vocabulary
from shared.events.base import Event, Metadata, NewEvent, RecordedEvent
from shared.events.catalog import ApiKeyCreated, ApiKeyRevoked
from shared.events.outbound import PRIVATE_FIELDS
from shared.events.streams import apikey_stream
from shared.ids import new_event_id, new_id

__all__ = [
    "PRIVATE_FIELDS",
    "ROLES",
    "ApiKey",
    "KeyNameTaken",
    "Role",
    "authenticate",
    "create_api_key",
    "create_key",
    "fold_key",
    "key_id_of",
    "list_api_keys",
    "revoke_api_key",
    "role_allows",
    "secret_sha256",
]

Role = Literal["read-only", "read-write", "admin"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
_RANK: Final = {role: rank for rank, role in enumerate(ROLES)}

# PRIVATE_FIELDS (re-exported): event fields that never leave Slipway, by event type. A
# key's hash only serves `authenticate`; shown to a reader it would be an offline oracle
# for its secret. Spelled in shared/events/outbound.py, where every way out renders events.

_SECRET: Final = re.compile(r"^slw_(?P<key_id>[0-9a-z]{26})_[A-Za-z0-9_-]{43}$")

_LIST: Final = """
SELECT global_position, tx_id, stream_id, stream_version, event_id, event_type,
       schema_version, payload, metadata, recorded_at
FROM events WHERE stream_id LIKE 'apikey-%' ORDER BY stream_id, stream_version
"""


# One lock for every key creation (rare): the check that a name is free and the
# append that takes it happen under it, so two creations of one name cannot both
# pass the check. A transaction-scoped advisory lock: released on commit or rollback.
_NAMES_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtext('slipway:apikey-names'))"


class KeyNameTaken(Rejected):
    """A live key already has this name (names are approver identities: one holder each)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"an API key named {name!r} exists already; revoke it first or choose another name"
        )
        self.name = name


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key as its stream tells it (never with its secret)."""

    key_id: str
    name: str
    role: Role
    created_at: datetime
    creator: str = ""
    revoked_at: datetime | None = None
    revoker: str = ""

    @property
    def revoked(self) -> bool:
        """Whether the key was revoked (it then authenticates nobody)."""
        return self.revoked_at is not None


def secret_sha256(secret: str) -> str:
    """The hex SHA-256 of a secret: what the log keeps instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(secret: str) -> str | None:
    """The key id a well-formed secret carries; None for anything else."""
    match = _SECRET.fullmatch(secret)
    return match["key_id"] if match else None


def role_allows(role: str, needed: Role) -> bool:
    """Whether `role` is at least `needed` (read-only < read-write < admin)."""
    return role in _RANK and _RANK[role] >= _RANK[needed]


def fold_key(history: Iterable[RecordedEvent]) -> tuple[ApiKey | None, str]:
    """The key after its stream's events, and the recorded hash of its secret ("" if none)."""
    key: ApiKey | None = None
    digest = ""
    for recorded in history:
        match recorded.event:
            case ApiKeyCreated() as created if key is None:
                key = ApiKey(
                    key_id=created.key_id,
                    name=created.name,
                    role=_role(created.role),
                    created_at=recorded.recorded_at,
                    creator=created.creator,
                )
                digest = created.secret_sha256
            case ApiKeyRevoked() as revoked if key is not None and not key.revoked:
                key = msgspec.structs.replace(
                    key, revoked_at=recorded.recorded_at, revoker=revoked.revoker
                )
            case _:
                pass
    return key, digest


async def create_key(
    store: EventStore, *, role: str, name: str, creator: str = "", metadata: Metadata | None = None
) -> tuple[ApiKey, str]:
    """Record a new key; returns it and its secret (the only time the secret is known).

    A key's name is who approves with it (`WAIT_APPROVAL` approvers), so no two
    live keys share one: `KeyNameTaken` otherwise. A revoked key frees its name,
    so a person can rotate their key and stay the approver the configs list;
    the log still tells the two keys apart (each has its own id and stream).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    key_id = new_id()
    secret = f"slw_{key_id}_{secrets.token_urlsafe(32)}"
    created = ApiKeyCreated(
        key_id=key_id,
        name=name or key_id,
        role=vocabulary.KeyRole(role),
        secret_sha256=secret_sha256(secret),
        creator=creator,
    )
    event = NewEvent(
        event=created,
        event_id=new_event_id(),
        metadata=metadata or envelope(actor=creator or None),
    )
    stream = apikey_stream(key_id)
    async with (
        unavailable_on_disconnect("create an API key"),
        store.pool.acquire() as conn,
        conn.transaction(),
    ):
        await conn.execute(_NAMES_LOCK)
        if any(k.name == created.name and not k.revoked for k in await _keys(store, conn)):
            raise KeyNameTaken(created.name)
        await store.append(stream, [event], expected_version=NO_STREAM, conn=conn)
    key, _ = fold_key(await store.read_stream(stream))
    assert key is not None
    return key, secret


async def create_api_key(store: EventStore, role: str, name: str = "") -> str:
    """Make a key of `role` (read-only, read-write or admin) and return its secret.

    For the sandbox and bootstrap scripts: the secret is shown once and never stored.
    """
    _, secret = await create_key(store, role=role, name=name, creator="bootstrap")
    return secret


KeyLife = Literal["absent", "live", "revoked"]


def _evolve_life(life: KeyLife, event: Event) -> KeyLife:
    match event:
        case ApiKeyCreated() if life == "absent":
            return "live"
        case ApiKeyRevoked() if life == "live":
            return "revoked"
        case _:
            return life


def _decide_revocation(life: KeyLife, revoked: ApiKeyRevoked) -> list[Event]:
    # Revoking twice changes nothing, and there is nothing to revoke in an empty stream.
    return [revoked] if life == "live" else []


REVOCATION: Final = Functions[KeyLife, ApiKeyRevoked]("absent", _evolve_life, _decide_revocation)
"""`apikey-<id>` as revoking sees it: absent, live or revoked."""


async def revoke_api_key(
    store: EventStore, key_id: str, *, revoker: str = "", metadata: Metadata | None = None
) -> ApiKey | None:
    """Revoke the key (revoking twice changes nothing); None when there is no such key."""
    stream = apikey_stream(key_id)
    revoked = ApiKeyRevoked(key_id=key_id, revoker=revoker)
    await execute(store, stream, REVOCATION, revoked, metadata or envelope(actor=revoker or None))
    key, _ = fold_key(await store.read_stream(stream))
    return key


async def list_api_keys(store: EventStore) -> list[ApiKey]:
    """Every key ever made, revoked ones included, oldest first."""
    async with unavailable_on_disconnect("list API keys"):
        return await _keys(store, store.pool)


async def _keys(store: EventStore, conn: Connection | asyncpg.Pool) -> list[ApiKey]:
    rows = await conn.fetch(_LIST)
    streams: dict[str, list[RecordedEvent]] = {}
    for row in rows:
        streams.setdefault(row["stream_id"], []).append(store.decode_row(row))
    keys = [key for key, _ in map(fold_key, streams.values()) if key is not None]
    return sorted(keys, key=lambda k: (k.created_at, k.key_id))


async def authenticate(store: EventStore, secret: str) -> ApiKey | None:
    """The live key whose secret this is; None for a malformed, unknown or revoked one."""
    key_id = key_id_of(secret)
    if key_id is None:
        return None
    key, digest = fold_key(await store.read_stream(apikey_stream(key_id)))
    # Constant-time, so the comparison does not leak how much of a guess was right.
    if key is None or key.revoked or not hmac.compare_digest(digest, secret_sha256(secret)):
        return None
    return key


def _role(text: str) -> Role:
    # Events were validated when appended; an unknown word (a future role read by
    # an old API) gets the least power rather than failing every request.
    return text if text in ROLES else "read-only"  # type: ignore[return-value]
