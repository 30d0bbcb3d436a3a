"""The API's limits on requests: how large a body it reads, how many log follows a key holds.

A follow (`GET /deployments/{id}/logs?follow=true`) holds a connection, a
NATS subscription and a poll loop for as long as the deployment runs, so a
single key could otherwise tie up an API replica with thousands of them. The
count is per replica (in memory): with N replicas a key holds at most N times
the limit, which still bounds each one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

from shared.errors import SlipwayError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_STREAMS_PER_KEY", "StreamSlots", "TooManyStreams"]

DEFAULT_MAX_BODY_BYTES: Final = 256 * 1024
"""Ample for any request the API takes (the largest is a registration with labels); a larger
body is refused (413) before more of it is read."""

DEFAULT_STREAMS_PER_KEY: Final = 4
"""Enough for a person following a few deployments in several terminals."""


class TooManyStreams(SlipwayError):
    """The key holds its limit of streams already."""


class StreamSlots:
    """Counts each key's open streams; `hold(key)` takes a slot for the block, or refuses."""

    def __init__(self, per_key: int = DEFAULT_STREAMS_PER_KEY) -> None:
        if per_key < 1:
            raise ValueError("per_key must be ≥ 1")
        self.per_key = per_key
        self._open: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold one of `key`'s stream slots for the block; TooManyStreams when none is free."""
        if self._open.get(key, 0) >= self.per_key:
            raise TooManyStreams(key)
        self._open[key] = self._open.get(key, 0) + 1
        try:
            yield
        finally:
            left = self._open[key] - 1
            if left:
                self._open[key] = left
            else:
                del self._open[key]
