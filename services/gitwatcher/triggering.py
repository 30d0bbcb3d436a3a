"""How the gitwatcher writes: its envelope, and a trigger opening a deployment's stream once."""

from __future__ import annotations

from typing import Final

import asyncpg

from shared.decider import OPENING, StreamTaken
from shared.errors import ConcurrencyConflict, IdempotencyViolation
from shared.eventlog import NO_STREAM, EventStore
from shared.eventlog.envelope import envelope
from shared.eventlog.execute import execute
from shared.events.base import Metadata, NewEvent
from shared.events.catalog import DeploymentTriggered
from shared.events.ids import trigger_event_id
from shared.events.streams import deployment_stream
from shared.logs import get_logger

__all__ = ["MAX_CONFLICT_RETRIES", "append_trigger", "event_metadata"]

log = get_logger("slipway.gitwatcher")

MAX_CONFLICT_RETRIES: Final = 8
"""Rounds of a gitwatcher append that keeps losing races with other replicas."""


def event_metadata(
    *, causation_id: str | None = None, correlation_id: str | None = None
) -> Metadata:
    """Envelope for what the gitwatcher appends: the current trace, so the planner continues it."""
    return envelope(actor="gitwatcher", causation_id=causation_id, correlation_id=correlation_id)


async def append_trigger(
    store: EventStore,
    trigger: DeploymentTriggered,
    metadata: Metadata,
    *,
    conn: asyncpg.Connection | None = None,
) -> bool:
    """Open `deployment-<id>` with `trigger`, once however many replicas try; False if refused.

    The event id is derived from the deployment id, so an append that finds
    the stream already opened by the same trigger returns its stored place.
    A new deployment's stream is empty, so the trigger is first appended expecting
    no stream, without reading it: only a stream that exists (a conflict, or the
    id stored with another payload) is read and decided on, as `OPENING` says.
    """
    event_id = trigger_event_id(trigger.deployment_id)
    stream = deployment_stream(trigger.deployment_id)
    opening = NewEvent(event=trigger, event_id=event_id, metadata=metadata)
    try:
        await store.append(stream, [opening], expected_version=NO_STREAM, conn=conn)
    except (ConcurrencyConflict, IdempotencyViolation):
        pass  # the stream exists: decide on its first event below
    else:
        return True
    try:
        await execute(
            store,
            stream,
            OPENING,
            trigger,
            metadata,
            event_ids=lambda _index, _event: event_id,
            # Lost a race with a replica appending the same trigger: the second round finds it.
            max_attempts=2,
            conn=conn,
        )
    except IdempotencyViolation as exc:
        log.error("deployment_trigger_refused", deployment_id=trigger.deployment_id, error=str(exc))
        return False
    except (StreamTaken, ConcurrencyConflict) as exc:
        log.error("deployment_stream_taken", deployment_id=trigger.deployment_id, reason=str(exc))
        return False
    return True
