"""The published event contract: an AsyncAPI 3.0 document generated from the catalog.

Everything in it is derived, so it cannot drift from what Slipway sends:
each event type's payload schema is msgspec's JSON Schema of its Struct (the
registry says which types exist and at which `schema_version`), the headers
are the envelope `shared.messaging` writes, the channel addresses are
`Subjects`' layout and the stream is the events stream. `GET
/api/v1/asyncapi.json` serves it; `make asyncapi` writes docs/asyncapi.json,
and a test fails when the committed file is not what this module generates.

Deterministic: the same catalog always gives the same bytes (sorted keys).
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Final

import msgspec

from shared.events.base import Metadata
from shared.events.catalog import ALL_EVENTS, default_registry
from shared.events.codec import tag_of
from shared.events.outbound import PRIVATE_FIELDS
from shared.messaging import (
    EVENT_TYPE,
    GLOBAL_POSITION,
    METADATA,
    MSG_ID,
    RECORDED_AT,
    SCHEMA_VERSION,
    STREAM_ID,
    STREAM_VERSION,
    TX_ID,
)
from shared.subjects import Subjects

__all__ = ["CONTRACT_VERSION", "asyncapi_document", "asyncapi_json"]

CONTRACT_VERSION: Final = "1.0.0"
"""The contract's own version: minor for an added event type or field, major for a break."""

_REF: Final = "#/components/schemas/{name}"

_HEADERS: Final = {
    MSG_ID: (
        "The event id (a UUID): JetStream drops a republished duplicate by it; "
        "a subscriber deduplicates by it.",
        "string",
    ),
    EVENT_TYPE: ("The event type (the payload's `type`).", "string"),
    SCHEMA_VERSION: (
        "The version of the payload's schema as stored (see docs/events.md).",
        "string",
    ),
    STREAM_ID: ("The stream the event belongs to: `<category>-<entity id>`.", "string"),
    STREAM_VERSION: ("The event's place in its stream, from 0.", "string"),
    GLOBAL_POSITION: ("The event's position in the whole log.", "string"),
    TX_ID: (
        "The id of the transaction that stored it; (tx id, position) is commit order "
        "and the HTTP cursor `<tx_id>:<global_position>`.",
        "string",
    ),
    RECORDED_AT: ("When the log stored it (ISO 8601).", "string"),
    METADATA: (
        "The envelope as JSON: correlation, causation, actor, occurred_at (the `Metadata` schema).",
        "string",
    ),
    "traceparent": ("W3C trace context of the trace the event belongs to.", "string"),
    "tracestate": ("W3C trace state.", "string"),
}


def asyncapi_document(subjects: Subjects | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the event stream on `subjects`' layout."""
    layout = subjects or Subjects()
    registry = default_registry()
    _, schemas = msgspec.json.schema_components([*ALL_EVENTS, Metadata], ref_template=_REF)
    schemas["SlipwayHeaders"] = {
        "type": "object",
        "properties": {
            name: {"type": kind, "description": text} for name, (text, kind) in _HEADERS.items()
        },
        "required": [n for n in _HEADERS if n not in ("traceparent", "tracestate")],
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type in ALL_EVENTS:
        tag = tag_of(event_type)
        name = event_type.__name__
        _leave_out(schemas[name], PRIVATE_FIELDS.get(tag, ()))
        version = registry.current_version(tag)
        messages[name] = {
            "name": tag,
            "title": name,
            "summary": (event_type.__doc__ or name).strip().split("\n\n")[0],
            "contentType": "application/json",
            "headers": {"$ref": _REF.format(name="SlipwayHeaders")},
            "payload": {"$ref": _REF.format(name=name)},
            "x-slipway-schema-version": version,
        }
        channels[tag] = {
            "address": f"{layout.prefix}.evt.{{category}}.{{stream_id}}.{tag}",
            "title": tag,
            "parameters": {
                "category": {"description": "The stream's category (`deployment`, …)."},
                "stream_id": {"description": "The stream id, `<category>-<entity id>`."},
            },
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"receive{name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{tag}"},
            "messages": [{"$ref": f"#/channels/{tag}/messages/{name}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Slipway events",
            "version": CONTRACT_VERSION,
            "description": (
                "Every committed event of Slipway's log, in commit order, as the relay "
                "publishes it to the JetStream stream "
                f"`{layout.events_stream}` (subjects `{layout.all_events}`). The payload is "
                "the event as stored, less its private fields (a key's hash); the envelope is in "
                "the headers. Filter by category "
                f"(`{layout.prefix}.evt.<category>.>`) or event type "
                f"(`{layout.prefix}.evt.*.*.<event_type>`). The same events are served over "
                "HTTP as Server-Sent Events (`GET /api/v1/events/stream`) and raw-event "
                "webhooks, natively or as CloudEvents/CDEvents. Versioning, replay window and "
                "the CDEvents mapping: docs/events.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "nats:4222",
                "protocol": "nats",
                "description": "Log in as a subscriber identity (docs/events.md).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
        "x-slipway-streams": {
            layout.events_stream: {
                "subjects": [layout.all_events],
                "retention": "limits",
                "order": "commit order of the log (the relay publishes it so)",
                "deduplication": f"by the `{MSG_ID}` header (the event id)",
            }
        },
    }


def _leave_out(schema: dict[str, Any], private: tuple[str, ...]) -> None:
    """Drop from an event's schema the fields the relay never publishes."""
    for field in private:
        schema.get("properties", {}).pop(field, None)
        if field in schema.get("required", ()):
            schema["required"].remove(field)


@functools.cache
def asyncapi_json() -> bytes:
    """The document of the default layout, as served and as committed in docs/."""
    text = json.dumps(asyncapi_document(), indent=2, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode()


if __name__ == "__main__":
    sys.stdout.buffer.write(asyncapi_json())
