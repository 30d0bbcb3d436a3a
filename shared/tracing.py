"""OpenTelemetry: one tracer provider per process, and W3C context across NATS.

nats-py has no OpenTelemetry integration, so trace context rides in message
headers (`traceparent`, `tracestate`) that we inject on publish and extract on
consume; the relay forwards the context stored with each event, so a consumer's
span is a child of the span that appended the event, and one deployment is one
trace from commit to done.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import DefaultGetter, DefaultSetter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

_propagator = TraceContextTextMapPropagator()
_getter: DefaultGetter = DefaultGetter()
_setter: DefaultSetter = DefaultSetter()
_tracer = trace.get_tracer("slipway")


def configure_tracing(
    service_name: str, *, extra_processors: tuple[SpanProcessor, ...] = ()
) -> TracerProvider:
    """Install the global tracer provider; OTLP/HTTP export when the endpoint is set."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def tracer(name: str) -> trace.Tracer:
    """The tracer of the named component."""
    return trace.get_tracer(name)


def inject(headers: MutableMapping[str, str], context: otel_context.Context | None = None) -> None:
    """Write the current (or given) span's W3C trace context into `headers`."""
    # OpenTelemetry's generic carrier type cannot be inferred from a MutableMapping.
    _propagator.inject(headers, context=context, setter=_setter)  # type: ignore[misc]


def extract(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context carried by `headers` (an empty context when there is none)."""
    return _propagator.extract(dict(headers or {}), getter=_getter)


def current_trace_headers() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span, for storing with an event."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


class _Traced(Protocol):
    """What carries a recorded trace context: an event's `Metadata`."""

    @property
    def traceparent(self) -> str | None: ...

    @property
    def tracestate(self) -> str | None: ...


def context_from_traceparent(
    traceparent: str | None, tracestate: str | None = None
) -> otel_context.Context:
    """The context whose parent is the span `traceparent` names (an empty context without one)."""
    carrier: dict[str, str] = {}
    if traceparent:
        carrier["traceparent"] = traceparent
        if tracestate:
            carrier["tracestate"] = tracestate
    return extract(carrier)


def context_of(metadata: _Traced | None) -> otel_context.Context:
    """The context recorded with an event (its `Metadata`): work done later for that event —
    from a lease claim rather than a consumed message — continues the event's trace."""
    if metadata is None:
        return otel_context.Context()
    return context_from_traceparent(metadata.traceparent, metadata.tracestate)


def trace_fields(context: otel_context.Context | None = None) -> tuple[str | None, str | None]:
    """(`traceparent`, `tracestate`) of the current (or given) context, for an event's Metadata."""
    carrier: dict[str, str] = {}
    inject(carrier, context)
    return carrier.get("traceparent"), carrier.get("tracestate")


@contextlib.contextmanager
def span_continuing(
    metadata: _Traced | None,
    name: str,
    *,
    tracer: trace.Tracer | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
) -> Iterator[trace.Span]:
    """A current span named `name`, child of the span recorded in `metadata` (an event's)."""
    with (tracer or _tracer).start_as_current_span(
        name, context=context_of(metadata), kind=kind, attributes=attributes
    ) as span:
        yield span
