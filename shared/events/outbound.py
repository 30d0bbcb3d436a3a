"""One recorded event as a subscriber receives it: native JSON, CloudEvents or CDEvents.

Pure. Every way out of Slipway (SSE, raw-event webhooks, the subscriber
kit) renders with `render`, so the three formats are spelled once:

- `native`: the API's event resource (what `GET /api/v1/events` lists), plus
  the `cursor` to resume after it; private fields (a key's hash) left out.
- `cloudevents`: a CloudEvents 1.0 structured JSON message
  (`application/cloudevents+json`) whose `data` is the native event's `data`;
  `type` is `dev.slipway.<event_type>.v<version of data>`, `subject` the
  stream id, and the extensions `slipwaycursor`, `slipwayposition`,
  `slipwaystream`, `slipwayversion` (and `traceparent` when recorded) carry the
  envelope.
- `cdevents`: zero or more CDEvents (`shared.events.cdevents`), each as a
  CloudEvents structured message whose `data` is the CDEvent, the binding
  the CDEvents spec defines. Needs the event's stream history.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, Literal, NamedTuple, get_args

import msgspec
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from shared.events.base import RecordedEvent
from shared.events.catalog import default_registry
from shared.events.cdevents import MAPPED_TYPES, cdevents_of

__all__ = [
    "FORMATS",
    "PRIVATE_FIELDS",
    "Document",
    "Format",
    "cloudevent_type",
    "cursor_of",
    "native_document",
    "needs_history",
    "parse_format",
    "public_data",
    "public_payload",
    "render",
    "with_withheld",
]

Format = Literal["native", "cloudevents", "cdevents"]
FORMATS: Final[tuple[str, ...]] = get_args(Format)

PRIVATE_FIELDS: Final[dict[str, tuple[str, ...]]] = {"api_key_created": ("secret_sha256",)}
"""Event fields that never leave Slipway, by event type: a key's hash only serves
`shared.apikeys.authenticate`; shown to a reader it would be an offline oracle for its secret.
Every way out drops them through `public_data`: the HTTP routes, these documents, and the
relay's NATS messages (`public_payload`)."""

_json_format: Final = JSONFormat()
_registry: Final = default_registry()
_SOURCE: Final = "/slipway"


class Document(NamedTuple):
    """One message to send: its type (the event type, or the CDEvent type) and JSON body."""

    type: str
    body: bytes


def parse_format(raw: str | None, *, field: str = "format") -> Format:
    """`raw` as a `Format` (None: native); ValueError naming the field and the choices."""
    if raw is None or raw == "":
        return "native"
    for known in FORMATS:
        if raw == known:
            return known  # type: ignore[return-value]  # one of Format's literals
    raise ValueError(f"{field} must be one of {', '.join(FORMATS)}, not {raw!r}")


def cursor_of(recorded: RecordedEvent) -> str:
    """Where a reader resumes after `recorded`: `<tx_id>:<global_position>` (commit order)."""
    return f"{recorded.tx_id}:{recorded.global_position}"


def cloudevent_type(event_type: str, schema_version: int) -> str:
    """The CloudEvents `type` of an event type at a schema version."""
    return f"dev.slipway.{event_type}.v{schema_version}"


def native_document(recorded: RecordedEvent) -> dict[str, Any]:
    """The event as the API lists it, with its resume cursor."""
    return {
        "global_position": recorded.global_position,
        "cursor": cursor_of(recorded),
        "stream_id": recorded.stream_id,
        "stream_version": recorded.stream_version,
        "event_id": str(recorded.event_id),
        "event_type": recorded.event_type,
        # `data` is the event at the latest version of its type (docs/events.md: versioning);
        # `stored_schema_version` is the version it was written at.
        "schema_version": _registry.current_version(recorded.event_type),
        "stored_schema_version": recorded.schema_version,
        "recorded_at": recorded.recorded_at.isoformat(),
        "data": _data(recorded),
        "metadata": msgspec.to_builtins(recorded.metadata),
    }


def needs_history(recorded: RecordedEvent, fmt: Format) -> bool:
    """Whether rendering `recorded` as `fmt` needs the events of its stream before it."""
    return fmt == "cdevents" and recorded.event_type in MAPPED_TYPES


def render(
    recorded: RecordedEvent,
    fmt: Format,
    history: Sequence[RecordedEvent] = (),
    *,
    source: str = _SOURCE,
) -> list[Document]:
    """The JSON documents `recorded` is sent as in `fmt` (one, except for CDEvents: 0..n)."""
    if fmt == "native":
        body = json.dumps(native_document(recorded), separators=(",", ":")).encode()
        return [Document(recorded.event_type, body)]
    if fmt == "cloudevents":
        return [Document(recorded.event_type, _json_format.write(_cloudevent(recorded, source)))]
    documents = []
    for cdevent in cdevents_of(recorded, history, source=source):
        context = cdevent["context"]
        attributes: dict[str, Any] = {
            "id": context["id"],
            "source": context["source"],
            "type": context["type"],
            "time": recorded.metadata.occurred_at or recorded.recorded_at,
            "subject": cdevent["subject"]["id"],
            "datacontenttype": "application/json",
            "slipwaycursor": cursor_of(recorded),
        }
        body = _json_format.write(CloudEvent(attributes, cdevent))
        documents.append(Document(context["type"], body))
    return documents


def _cloudevent(recorded: RecordedEvent, source: str) -> CloudEvent:
    attributes: dict[str, Any] = {
        "id": str(recorded.event_id),
        "source": source,
        "type": cloudevent_type(
            recorded.event_type, _registry.current_version(recorded.event_type)
        ),
        "subject": recorded.stream_id,
        "time": recorded.metadata.occurred_at or recorded.recorded_at,
        "datacontenttype": "application/json",
        "slipwaycursor": cursor_of(recorded),
        "slipwayposition": recorded.global_position,
        "slipwaystream": recorded.stream_id,
        "slipwayversion": recorded.stream_version,
    }
    if recorded.metadata.traceparent:
        attributes["traceparent"] = recorded.metadata.traceparent
    return CloudEvent(attributes, _data(recorded))


def public_data(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """`data` (an event's fields) without the fields of `PRIVATE_FIELDS[event_type]`."""
    private = PRIVATE_FIELDS.get(event_type, ())
    return {name: value for name, value in data.items() if name not in private}


def public_payload(event_type: str, payload: bytes) -> bytes:
    """A stored JSON payload as it may leave Slipway (the relay publishes this): the same
    bytes for a type without private fields, else re-encoded without them."""
    if event_type not in PRIVATE_FIELDS:
        return payload
    return msgspec.json.encode(public_data(event_type, msgspec.json.decode(payload)))


def with_withheld(event_type: str, payload: bytes) -> bytes:
    """A payload that `public_payload` stripped, with its private (text) fields back as "",
    so it decodes as its catalog type. For a message's *claim* only: Slipway's consumers act
    on the event re-read from the log, and no reader outside learns anything from ""."""
    private = PRIVATE_FIELDS.get(event_type, ())
    if not private:
        return payload
    data = msgspec.json.decode(payload)
    if not isinstance(data, dict) or all(name in data for name in private):
        return payload
    return msgspec.json.encode({**dict.fromkeys(private, ""), **data})


def _data(recorded: RecordedEvent) -> dict[str, Any]:
    data = msgspec.to_builtins(recorded.event)
    data.pop("type", None)  # the tag: already `event_type`
    return public_data(recorded.event_type, data)
