"""Identifiers: UUIDv7 event ids, lowercase ULID-style entity ids, and the ids derived
from what caused them.

New ids are time-ordered so that B-tree indexes on them stay append-mostly, and
spelled in lowercase ASCII so that they fit NATS subject tokens. Derived ids
are part of the wire contract: `deterministic_event_id` is their primitive, and
each named rule (which deployment a commit or a sync request opens, which
analysis a stage asks for, ...) is written once, in `shared.events.ids`.
"""

from __future__ import annotations

import os
import time
import uuid

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_event_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # 12 bits rand_a
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # 62 bits rand_b
    return uuid.UUID(int=value)


def new_id() -> str:
    """A 26-character lowercase ULID: sortable by creation time, safe in subjects and URLs."""
    millis = time.time_ns() // 1_000_000
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


_SLIPWAY_NAMESPACE = uuid.UUID("6f1b8a52-3f0e-4c59-9a57-6d1d2c7f9e10")


def deterministic_event_id(*parts: str) -> uuid.UUID:
    """An event id derived from what caused it, so a handler that runs twice appends once."""
    return uuid.uuid5(_SLIPWAY_NAMESPACE, "\x1f".join(parts))
