"""Which keys sign the console's cookies and which still verify them (pure).

Every API replica reads the same keys from PostgreSQL (`session_keys`), so a
session issued by one replica works on all. Keys are numbered; a rotation adds
the next one. A new key signs only once it has been in the table for
`PUBLISH_S`, longer than a replica takes to re-read the table, so every replica
knows a key before any cookie signed with it reaches them. A replaced key
still verifies until every session it may have signed has expired.

Every time here is the database's (`db_clock`): a key's `created_at` is
PostgreSQL's `clock_timestamp()` when it was stored, and `now` the database's
time when the keys were read. Replicas whose clocks differ by minutes thus
switch to a new key at the same moment (each re-reads the table at
`Keyring.changes_at`), and drop a replaced one at the same moment too.

`SLIPWAY_CONSOLE_SESSION_KEY` overrides all this with one fixed key
(`Keyring.fixed`): nothing is read from or written to the database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "FIXED_KID",
    "PUBLISH_S",
    "REFRESH_S",
    "Keyring",
    "StoredKey",
    "keyring_of",
    "retired",
]

REFRESH_S: Final = 60.0
"""How often a replica re-reads the keys (a new one, a rotation)."""
PUBLISH_S: Final = 2 * REFRESH_S
"""How long a new key waits before it signs: every replica has read it by then."""
FIXED_KID: Final = "e"
"""The id of the key set by `SLIPWAY_CONSOLE_SESSION_KEY` (stored keys are numbered)."""
KID: Final = re.compile(r"^(?:[0-9]{1,9}|e)$")


@dataclass(frozen=True)
class StoredKey:
    """A session signing key as stored in PostgreSQL: its id, secret and when it was stored."""

    kid: int
    secret: bytes
    created_at: float
    """Unix seconds, the database's clock when it was stored."""


@dataclass(frozen=True)
class Keyring:
    """The key that signs now (none: nothing can be signed yet) and every key that verifies."""

    signing: str = ""
    keys: Mapping[str, bytes] = field(default_factory=dict)
    changes_at: float = float("inf")
    """When (the database's time) a key starts signing or stops verifying: the keys must be
    read again by then."""

    @classmethod
    def fixed(cls, secret: bytes) -> Keyring:
        """A keyring of one key that never rotates (`SLIPWAY_CONSOLE_SESSION_KEY`)."""
        return cls(FIXED_KID, {FIXED_KID: secret})

    def signing_key(self) -> tuple[str, bytes]:
        """The id and secret new cookies are signed with; an error until keys are loaded."""
        if not self.signing:
            raise RuntimeError("the console's session keys have not been loaded yet")
        return self.signing, self.keys[self.signing]

    def verifying_key(self, kid: str) -> bytes | None:
        """The secret of key `kid` for checking a cookie, or None for an unknown or malformed id."""
        return self.keys.get(kid) if KID.fullmatch(kid) else None


def _lifetimes(
    keys: list[StoredKey], session_ttl_s: float
) -> Iterable[tuple[StoredKey, float, float]]:
    """Each key with when it starts signing and when the last session it signed expires."""
    for i, key in enumerate(keys):
        starts = key.created_at + PUBLISH_S if i else float("-inf")  # the first signs at once
        replaced = keys[i + 1].created_at + PUBLISH_S if i + 1 < len(keys) else float("inf")
        yield key, starts, replaced + session_ttl_s


def keyring_of(stored: Iterable[StoredKey], now: float, session_ttl_s: float) -> Keyring:
    """The keyring at `now` (the database's time): the newest published key signs; a key
    verifies from the moment it is stored until its last session expires."""
    keys = sorted(stored, key=lambda k: k.kid)
    verifying: dict[str, bytes] = {}
    signing = ""
    changes_at = float("inf")
    for key, starts, ends in _lifetimes(keys, session_ttl_s):
        if now < ends:
            verifying[str(key.kid)] = key.secret
            changes_at = min(changes_at, ends)
        if starts <= now:
            signing = str(key.kid)
        else:
            changes_at = min(changes_at, starts)
    return Keyring(signing, verifying, changes_at)


def retired(stored: Iterable[StoredKey], now: float, session_ttl_s: float) -> list[int]:
    """Keys no session can carry any more (they may be deleted)."""
    keys = sorted(stored, key=lambda k: k.kid)
    return [key.kid for key, _, ends in _lifetimes(keys, session_ttl_s) if ends <= now]
