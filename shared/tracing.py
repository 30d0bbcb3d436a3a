"""OpenTelemetry: one tracer provider per process, and W3C context across NATS.

nats-py has no OpenTelemetry integration, so trace context rides in message
headers (`traceparent`, `tracestate`) that we inject on publish and extract on
consume; the relay forwards the context stored with each event, so a consumer's
span is a child of the span that appended the event, and one deployment is one
trace from commit to done.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import DefaultGetter, DefaultSetter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_getter: DefaultGetter = DefaultGetter()
_setter: DefaultSetter = DefaultSetter()


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
