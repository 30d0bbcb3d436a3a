"""Reading a deployment's trace in tests: the recorded `traceparent`s, and the spans this
process ended (the services' tracers are OpenTelemetry's global ones)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.events.base import RecordedEvent


def trace_id_of(event: RecordedEvent) -> str:
    """The trace id of the traceparent recorded with `event` (`version-trace-span-flags`)."""
    traceparent = event.metadata.traceparent
    assert traceparent, f"{event.stream_id}#{event.stream_version} {event.event_type}: no trace"
    return traceparent.split("-")[1]


def off_trace(events: Sequence[RecordedEvent], trace_id: str) -> list[str]:
    """The events whose recorded trace is missing or another one than `trace_id`."""
    return [
        f"{e.stream_version} {e.event_type} {e.metadata.traceparent}"
        for e in events
        if not e.metadata.traceparent or e.metadata.traceparent.split("-")[1] != trace_id
    ]


def in_trace(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.context is not None and format(s.context.trace_id, "032x") == trace_id
    ]


def ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[str]:
    """The names of `span`'s ancestors among `spans`, nearest first."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    names: list[str] = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        found = by_id[parent.span_id]
        names.append(found.name)
        parent = found.parent
    return names
