"""The published event contract: AsyncAPI in step with the catalog; CloudEvents and CDEvents
that validate; event hooks' config errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from shared.config import load_control_config
from shared.errors import ConfigError
from shared.eventlog import ANY, EventStore, new_events
from shared.events import outbound
from shared.events.asyncapi import asyncapi_document, asyncapi_json
from shared.events.base import Event
from shared.events.catalog import ALL_EVENTS, default_registry
from shared.events.codec import EventRegistry, tag_of
from shared.events.feed import Feed, selection_of
from shared.events.outbound import render
from tests.support.paths import REPO_ROOT
from tests.support.subscriber import all_events, append_story, cdevent_validators, validate_cdevent

ROOT = REPO_ROOT

MAPPED = {
    "change.merged",
    "environment.created",
    "environment.modified",
    "environment.deleted",
    "pipelinerun.queued",
    "pipelinerun.started",
    "pipelinerun.finished",
    "taskrun.started",
    "taskrun.finished",
    "service.deployed",
    "service.upgraded",
    "service.rolledback",
    "service.removed",
    "incident.detected",
    "incident.resolved",
}


def test_the_committed_asyncapi_document_is_the_generated_one() -> None:
    """docs/asyncapi.json is what `make asyncapi` writes from the catalog now."""
    committed = (ROOT / "docs" / "asyncapi.json").read_bytes()
    assert committed == asyncapi_json(), "docs/asyncapi.json is stale: run `make asyncapi`"


def test_asyncapi_names_every_event_type_with_its_schema_and_version() -> None:
    document = asyncapi_document()
    assert document["asyncapi"] == "3.0.0"
    registry = default_registry()
    schemas = document["components"]["schemas"]
    assert set(document["channels"]) == set(registry.tags())
    for event_type in ALL_EVENTS:
        tag = tag_of(event_type)
        channel = document["channels"][tag]
        assert channel["address"] == f"slipway.evt.{{category}}.{{stream_id}}.{tag}"
        message = document["components"]["messages"][event_type.__name__]
        assert message["x-slipway-schema-version"] == registry.current_version(tag)
        payload = schemas[message["payload"]["$ref"].rsplit("/", 1)[1]]
        assert payload["properties"]["type"] == {"enum": [tag]}
        # Every field of the Struct is in its schema (the document is derived, not written),
        # except the private ones, which the relay never publishes.
        private = set(outbound.PRIVATE_FIELDS.get(tag, ()))
        assert set(event_type.__struct_fields__) - private <= set(payload["properties"])
        assert not private & (set(payload["properties"]) | set(payload.get("required", ())))


async def test_the_story_maps_to_cdevents_that_validate_against_v0_5_1(store: EventStore) -> None:
    """Every CDEvent the story maps to validates against its schema, and every type of the
    mapping's table is among them (first deploy, upgrade, rollback, removal, incidents)."""
    validators = cdevent_validators()
    await append_story(store)

    async def read_stream(stream_id: str, count: int) -> list[Any]:
        return await store.read_stream(stream_id, limit=count)

    feed = Feed(selection_of(fmt="cdevents"), read_stream)
    seen: list[str] = []
    ids: set[str] = set()
    for recorded in await all_events(store):
        for document in await feed.documents(recorded):
            seen.append(validate_cdevent(validators, document.body))
            ids.add(json.loads(document.body)["id"])
    assert set(seen) == MAPPED
    assert len(ids) == len(seen), "each CDEvent has an id of its own"
    # The first deployment is `deployed`, the third `upgraded`; the failed one rolled back.
    assert seen.count("service.deployed") == 1 and seen.count("service.upgraded") == 1
    assert seen.count("service.rolledback") == 1 and seen.count("incident.resolved") == 1


async def test_cdevents_need_the_stream_history_a_fresh_feed_reads(store: EventStore) -> None:
    """A feed that joins a deployment part-way (a resume) reads the stream's earlier events:
    the same CDEvents as a feed that saw it all."""
    await append_story(store)
    events = await all_events(store)

    async def read_stream(stream_id: str, count: int) -> list[Any]:
        return await store.read_stream(stream_id, limit=count)

    whole = Feed(selection_of(fmt="cdevents"), read_stream)
    expected = [d for e in events for d in await whole.documents(e)]
    late = Feed(selection_of(fmt="cdevents"), read_stream)
    middle = len(events) // 2
    got = [d for e in events[middle:] for d in await late.documents(e)]
    assert got == expected[len(expected) - len(got) :]
    assert any(b'"service.upgraded' in d.body or b"upgraded" in d.body for d in got)


async def test_every_event_renders_as_a_cloudevent(store: EventStore) -> None:
    """Structured CloudEvents 1.0 JSON, parsed back by the SDK: id, source, type, subject."""
    await append_story(store)
    for recorded in await all_events(store):
        (document,) = render(recorded, "cloudevents")
        envelope = JSONFormat().read(CloudEvent, document.body)
        assert envelope.get_specversion() == "1.0"
        assert envelope.get_id() == str(recorded.event_id)
        assert envelope.get_type() == f"dev.slipway.{recorded.event_type}.v1"
        assert envelope.get_subject() == recorded.stream_id
        assert (
            envelope.get_extension("slipwaycursor")
            == f"{recorded.tx_id}:{recorded.global_position}"
        )
        data = envelope.get_data()
        assert isinstance(data, dict) and "type" not in data


@pytest.mark.parametrize(
    ("hook", "field", "message"),
    [
        ("{name: a, url: 'http://x', types: [nope]}", "types", "unknown event type"),
        ("{name: a, url: 'http://x', format: xml}", "format", "format must be one of"),
        ("{name: a, url: 'ftp://x'}", "url", "http(s) URL"),
        ("{name: A!, url: 'http://x'}", "name", "lowercase"),
    ],
)
def test_an_event_hook_config_error_names_the_file_line_and_field(
    tmp_path: Path, hook: str, field: str, message: str
) -> None:
    path = tmp_path / "slipway.yaml"
    path.write_text(
        "apiVersion: slipway.dev/v1\nkind: Slipway\nspec:\n  project: p\n"
        f"  eventHooks:\n    - {hook}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_control_config(path)
    text = str(caught.value)
    assert str(path) in text and ":6" in text and field in text and message in text, text


class ProbeV1(Event, tag="contract_probe", frozen=True):
    name: str


class ProbeV2(Event, tag="contract_probe", frozen=True):
    full_name: str  # renamed: a breaking change, so version 2 with an upcaster


async def test_after_a_breaking_change_subscribers_get_the_latest_version(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event stored at v1 is rendered at v2 (upcast) in every format, saying both versions:
    the versioning policy of docs/events.md."""
    old = EventRegistry([ProbeV1])
    new = EventRegistry()
    new.register(
        ProbeV2, version=2, upcasters={1: lambda d: {"type": d["type"], "full_name": d["name"]}}
    )
    await EventStore(pool, old).append(
        "probe-1", new_events([ProbeV1(name="web")]), expected_version=ANY
    )
    (recorded,) = await EventStore(pool, new).read_stream("probe-1")
    monkeypatch.setattr(outbound, "_registry", new)
    (native,) = render(recorded, "native")
    document = json.loads(native.body)
    assert document["data"] == {"full_name": "web"}
    assert (document["schema_version"], document["stored_schema_version"]) == (2, 1)
    (cloud,) = render(recorded, "cloudevents")
    envelope = JSONFormat().read(CloudEvent, cloud.body)
    assert envelope.get_type() == "dev.slipway.contract_probe.v2"
    assert envelope.get_data() == {"full_name": "web"}
