"""`subscribe`: a source's documents, each handled once per position, checkpointed."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Final, Protocol

from slipway_subscriber.checkpoint import Checkpoint, State
from slipway_subscriber.received import Received

__all__ = ["Source", "subscribe"]

DEFAULT_RECENT_IDS: Final = 100
"""Positions are intrinsic to events (a republished event comes with its own), so the ids are
only a second line: a short window is enough."""


class Source(Protocol):
    """Where documents come from: NATS (`NatsSource`) or SSE (`SseSource`).

    `follow` yields documents in commit order from just after `since`, forever,
    reconnecting by itself; a document may come twice (a reconnect, a relay
    failover), never out of order and never with a gap.
    """

    def follow(self, since: State) -> AsyncIterator[Received]:
        """Events after `since`, in the log's order, for ever."""


async def subscribe(
    source: Source, checkpoint: Checkpoint, *, recent_ids: int = DEFAULT_RECENT_IDS
) -> AsyncGenerator[Received, None]:
    """Every document of `source` after `checkpoint`'s state, once.

    A document is handled when the loop asks for the next one: only then
    does the checkpoint move past it. One at or before the checkpoint's
    position, or whose id was handled lately, is dropped.
    """
    state = checkpoint.load()
    recent = deque(state.recent_ids, maxlen=recent_ids)
    seen = set(recent)
    async for received in source.follow(state):
        if state.position is not None and received.position <= state.position:
            continue
        if received.id in seen:
            continue
        yield received
        if len(recent) == recent.maxlen:
            seen.discard(recent[0])
        recent.append(received.id)
        seen.add(received.id)
        state = State(
            position=received.position,
            stream_sequence=received.stream_sequence or state.stream_sequence,
            recent_ids=list(recent),
        )
        checkpoint.save(state)
