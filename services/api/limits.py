"""Per-key limits on long-lived requests: how many live log streams one API key holds at once.

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

__all__ = ["DEFAULT_STREAMS_PER_KEY", "StreamSlots", "TooManyStreams"]

DEFAULT_STREAMS_PER_KEY: Final = 4
"""Enough for a person following a few deployments in several terminals."""


class TooManyStreams(Exception):
    """The key holds its limit of streams already."""


class StreamSlots:
    """Counts each key's open streams; `hold(key)` takes a slot for the block, or refuses."""

    def __init__(self, per_key: int = DEFAULT_STREAMS_PER_KEY) -> None:
        if per_key < 1:
            raise ValueError("per_key must be ≥ 1")
        self.per_key = per_key
        self._open: dict[str, int] = {}

    def open_for(self, key: str) -> int:
        return self._open.get(key, 0)

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
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
