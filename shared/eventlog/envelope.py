"""The one factory of event envelopes: `Metadata` caused by an event or a command.

Every writer wraps what it appends the same way: the correlation id follows the
chain it continues (the cause's, else the one given), the causation id names
the event that caused it, and the trace context is the current span's (or the
given one), so whoever handles the event later continues this trace (DESIGN
§11: one deployment is one trace). When no span is current, the cause's
recorded trace is kept rather than dropped.
"""

from __future__ import annotations

from datetime import datetime

from opentelemetry import context as otel_context

from shared.events.base import Metadata, RecordedEvent
from shared.tracing import trace_fields

__all__ = ["envelope"]


def envelope(
    *,
    actor: str | None = None,
    caused_by: RecordedEvent | None = None,
    causation_id: str | None = None,
    correlation_id: str | None = None,
    occurred_at: datetime | None = None,
    context: otel_context.Context | None = None,
) -> Metadata:
    """The `Metadata` for events written by `actor` because of `caused_by` (an event) or a
    command (`correlation_id` and, if it has one, `causation_id` given by the caller).

    `context` is the span the events belong to (default: the current one).
    """
    traceparent, tracestate = trace_fields(context)
    if caused_by is not None:
        causation_id = causation_id or str(caused_by.event_id)
        correlation_id = caused_by.metadata.correlation_id or correlation_id
        if traceparent is None:
            traceparent = caused_by.metadata.traceparent
            tracestate = caused_by.metadata.tracestate
    return Metadata(
        correlation_id=correlation_id,
        causation_id=causation_id,
        traceparent=traceparent,
        tracestate=tracestate,
        actor=actor,
        occurred_at=occurred_at,
    )
