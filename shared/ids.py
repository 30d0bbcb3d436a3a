"""Identifiers: UUIDv7 event ids and lowercase ULID-style entity ids.

Both are time-ordered so that B-tree indexes on them stay append-mostly, and
both are spelled in lowercase ASCII so that they fit NATS subject tokens.
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
