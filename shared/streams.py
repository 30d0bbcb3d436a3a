"""Stream ids: `<category>-<entity id>`, in lowercase ASCII so they fit NATS subject tokens."""

from __future__ import annotations

import re

_STREAM_ID = re.compile(r"^[a-z][a-z0-9_]*-[a-z0-9_][a-z0-9_-]*$")


def stream_id(category: str, entity_id: str) -> str:
    """The stream id `<category>-<entity_id>`, checked."""
    return check_stream_id(f"{category}-{entity_id}")


def check_stream_id(value: str) -> str:
    """`value` if it is a valid stream id; ValueError naming the rule otherwise."""
    if len(value) > 200 or not _STREAM_ID.match(value):
        raise ValueError(
            f"stream id {value!r} must be '<category>-<id>' in lowercase letters, digits, "
            "'_' and '-' (at most 200 characters)"
        )
    return value


def category_of(value: str) -> str:
    """The category of a stream id (what comes before the first `-`)."""
    return value.split("-", 1)[0]
