"""The event codec: round-trips, schema evolution by upcasting, errors, and golden files."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import MessageError, UnknownEventType
from shared.events import Event, EventRegistry
from shared.events.catalog import ALL_EVENTS, default_registry
from shared.events.codec import tag_of
from tests.golden.make_golden import GOLDEN_DIR, golden_path, sample_event, write_missing

MAKE_GOLDEN = ".venv/bin/python tests/golden/make_golden.py"
# Seeded: the same examples on every run and machine, so a failure reproduces as is.
PROPERTY = settings(derandomize=True, suppress_health_check=[HealthCheck.too_slow])
# The garbage tests run once per registered type and version: fewer examples each.
GARBAGE = settings(PROPERTY, max_examples=50)


def strategy_for(t: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    """Values of a msgspec type, as msgspec sees the field (constraints included)."""
    mi = msgspec.inspect
    if isinstance(t, mi.StrType):
        if t.pattern is not None:
            return st.from_regex(t.pattern)
        return st.text(min_size=t.min_length or 0, max_size=t.max_length)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.IntType):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else -(2**63))
        high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else 2**63 - 1)
        return st.integers(low, high)
    if isinstance(t, mi.FloatType):  # JSON has no NaN or infinity: msgspec writes null
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.EnumType):
        return st.sampled_from(list(t.cls))
    if isinstance(t, mi.UUIDType):
        return st.uuids()
    if isinstance(t, mi.DateTimeType):
        return st.datetimes(timezones=st.just(dt.UTC))
    if isinstance(t, mi.DateType):
        return st.dates()
    if isinstance(t, mi.TupleType):
        return st.tuples(*(strategy_for(item) for item in t.item_types))
    if isinstance(t, mi.VarTupleType):
        return st.lists(strategy_for(t.item_type), max_size=4).map(tuple)
    if isinstance(t, mi.ListType):
        return st.lists(strategy_for(t.item_type), max_size=4)
    if isinstance(t, mi.DictType):
        return st.dictionaries(strategy_for(t.key_type), strategy_for(t.value_type), max_size=4)
    if isinstance(t, mi.UnionType):
        return st.one_of(*(strategy_for(x) for x in t.types))
    if isinstance(t, mi.StructType):
        return st.builds(t.cls, **{f.name: strategy_for(f.type) for f in t.fields})
    pytest.fail(f"no strategy for {t!r}: teach strategy_for in this module about it")


def events_of(event_type: type[Event]) -> st.SearchStrategy[Event]:
    """Instances of `event_type` with every field drawn, defaulted ones included."""
    return strategy_for(msgspec.inspect.type_info(event_type))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


# --- round-trips -------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ALL_EVENTS, ids=tag_of)
@given(data=st.data())
@PROPERTY
def test_every_catalog_event_round_trips(event_type: type[Event], data: st.DataObject) -> None:
    """Every catalog event decodes back to an equal Struct, tagged with its type and version."""
    registry = default_registry()
    event = data.draw(events_of(event_type))
    tag, version, payload = registry.encode(event)
    assert (tag, version) == (tag_of(event_type), registry.current_version(tag))
    decoded = registry.decode(tag, version, payload)
    assert type(decoded) is event_type
    assert decoded == event
    assert registry.encode(decoded)[2] == payload


# --- schema evolution --------------------------------------------------------------------


class WidgetResized(Event, tag="test_widget_resized", frozen=True):
    """Version 3. v1 was {id, dimensions: "WxH"}; v2 was {widget_id, width, height}."""

    widget_id: str
    size: tuple[int, int]
    unit: str = "px"


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    width, height = data.pop("dimensions").split("x")
    return {**data, "widget_id": data.pop("id"), "width": int(width), "height": int(height)}


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "size": [data.pop("width"), data.pop("height")]}


def evolved_registry() -> EventRegistry:
    registry = default_registry()
    registry.register(WidgetResized, version=3, upcasters={1: _v1_to_v2, 2: _v2_to_v3})
    return registry


@pytest.mark.parametrize(
    ("version", "payload"),
    [
        (1, {"type": "test_widget_resized", "id": "w1", "dimensions": "640x480"}),
        (2, {"type": "test_widget_resized", "widget_id": "w1", "width": 640, "height": 480}),
        (3, {"type": "test_widget_resized", "widget_id": "w1", "size": [640, 480]}),
    ],
)
def test_older_payloads_are_upcast_to_the_current_struct(
    version: int, payload: dict[str, Any]
) -> None:
    """Payloads stored at v1 and v2 decode, through each upcaster in turn, into the v3 Struct."""
    registry = evolved_registry()
    decoded = registry.decode("test_widget_resized", version, msgspec.json.encode(payload))
    assert decoded == WidgetResized(widget_id="w1", size=(640, 480))
    assert registry.encode(decoded)[:2] == ("test_widget_resized", 3)


@pytest.mark.parametrize("version", [0, -1, 4, 300])
def test_schema_versions_this_build_does_not_know_are_message_errors(version: int) -> None:
    """A stored schema version outside 1..current cannot be decoded, ever: MessageError."""
    payload = msgspec.json.encode(WidgetResized(widget_id="w1", size=(1, 2)))
    with pytest.raises(MessageError, match=r"schema version .* \(1\.\.3\)"):
        evolved_registry().decode("test_widget_resized", version, payload)


@pytest.mark.parametrize(
    ("upcasters", "missing"),
    [(None, "[1, 2]"), ({1: _v1_to_v2}, "[2]"), ({2: _v2_to_v3}, "[1]")],
)
def test_registering_a_version_without_every_upcaster_raises(
    upcasters: dict[int, Any] | None, missing: str
) -> None:
    """Registering version 3 needs upcasters from 1 and 2; the error names the missing ones."""
    registry = EventRegistry()
    with pytest.raises(
        ValueError, match=re.escape(f"version 3 needs upcasters from versions {missing}")
    ):
        registry.register(WidgetResized, version=3, upcasters=upcasters)
    assert "test_widget_resized" not in registry


# --- errors ------------------------------------------------------------------------------


def test_unknown_event_type_raises_unknown_event_type() -> None:
    """Decoding a tag no registry knows, or encoding an unregistered type, is UnknownEventType."""
    registry = default_registry()
    with pytest.raises(UnknownEventType, match="test_widget_resized"):
        registry.decode("test_widget_resized", 1, b'{"widget_id": "w1"}')
    with pytest.raises(UnknownEventType, match="test_widget_resized"):
        registry.encode(WidgetResized(widget_id="w1", size=(1, 2)))
    assert issubclass(UnknownEventType, MessageError)


def _decodes_or_message_error(registry: EventRegistry, tag: str, version: int, data: bytes) -> None:
    try:
        decoded = registry.decode(tag, version, data)
    except MessageError:
        return
    assert tag_of(type(decoded)) == tag


REGISTERED = [(tag, default_registry().current_version(tag)) for tag in default_registry().tags()]
REGISTERED += [("test_widget_resized", version) for version in (1, 2, 3)]


@pytest.mark.parametrize(("tag", "version"), REGISTERED)
@given(garbage=st.binary(max_size=200))
@GARBAGE
def test_garbage_bytes_are_a_message_error(tag: str, version: int, garbage: bytes) -> None:
    """Arbitrary bytes at any known type and version decode or raise MessageError, nothing else."""
    _decodes_or_message_error(evolved_registry(), tag, version, garbage)


@pytest.mark.parametrize(("tag", "version"), REGISTERED)
@given(value=json_values)
@GARBAGE
def test_wrong_shaped_json_is_a_message_error(tag: str, version: int, value: Any) -> None:
    """Well-formed JSON of the wrong shape, upcast or not, decodes or raises MessageError only."""
    _decodes_or_message_error(evolved_registry(), tag, version, msgspec.json.encode(value))


@pytest.mark.parametrize("version", [1, 2])
@given(
    fields=st.dictionaries(
        st.sampled_from(["id", "dimensions", "widget_id", "width", "height", "size"]), json_values
    )
)
@PROPERTY
def test_old_payloads_an_upcaster_cannot_read_are_a_message_error(
    version: int, fields: dict[str, Any]
) -> None:
    """An old payload missing or mistyping what its upcaster reads raises MessageError only."""
    data = msgspec.json.encode({"type": "test_widget_resized", **fields})
    _decodes_or_message_error(evolved_registry(), "test_widget_resized", version, data)


# --- golden files ------------------------------------------------------------------------

GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.json"))


def _as_json(value: object) -> Any:
    """A field value as it reads in JSON (tuples become lists), to compare with a golden file."""
    return json.loads(msgspec.json.encode(value))


def _as_written(actual: Any, golden: Any, where: str) -> Any:
    """`actual` with the keys of nested objects that `golden` lacks left out: fields added to a
    nested Struct since the file was written, each of which must hold an empty default."""
    if isinstance(actual, dict) and isinstance(golden, dict):
        added = {k: v for k, v in actual.items() if k not in golden}
        assert all(v in ("", [], {}, None, 0, False) for v in added.values()), (
            f"{where}: fields added since the golden file must default to empty: {added}"
        )
        return {
            k: _as_written(v, golden[k], f"{where}.{k}") for k, v in actual.items() if k in golden
        }
    if isinstance(actual, list) and isinstance(golden, list) and len(actual) == len(golden):
        return [
            _as_written(a, g, f"{where}[{i}]")
            for i, (a, g) in enumerate(zip(actual, golden, strict=True))
        ]
    return actual


def check_golden(registry: EventRegistry, path: Path) -> None:
    """The golden file's payload decodes, as its type and version, to its expected fields."""
    golden = json.loads(path.read_text("utf-8"))
    assert set(golden) == {"event_type", "schema_version", "payload", "expected"}, path.name
    assert (
        path.name == golden_path(path.parent, golden["event_type"], golden["schema_version"]).name
    )
    payload = msgspec.json.encode(golden["payload"])
    decoded = registry.decode(golden["event_type"], golden["schema_version"], payload)
    assert tag_of(type(decoded)) == golden["event_type"]
    # Fields added since the file was written decode to their defaults; every field it
    # names must still exist and still mean the same.
    gone = set(golden["expected"]) - set(decoded.__struct_fields__)
    assert not gone, f"{path.name}: fields {sorted(gone)} were removed from the Struct"
    actual = {
        name: _as_written(_as_json(getattr(decoded, name)), golden["expected"][name], name)
        for name in golden["expected"]
    }
    assert actual == golden["expected"], f"{path.name} no longer decodes to what it did"


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.name)
def test_golden_files_still_decode(path: Path) -> None:
    """Each golden payload still decodes to the field values it decoded to when written."""
    check_golden(default_registry(), path)


CURRENT_GOLDEN_FILES = [
    path
    for path in GOLDEN_FILES
    if json.loads(path.read_text("utf-8"))["schema_version"]
    == default_registry().current_version(json.loads(path.read_text("utf-8"))["event_type"])
]


@pytest.mark.parametrize("path", CURRENT_GOLDEN_FILES, ids=lambda p: p.name)
def test_golden_payloads_encode_back_as_they_were(path: Path) -> None:
    """A golden payload at the current version, decoded and encoded again, writes each of its
    fields as it was, in its order: vocabulary fields (`StrEnum`s) are the plain strings they
    always were (fields added since the file was written come in with their defaults)."""
    golden = json.loads(path.read_text("utf-8"))
    registry = default_registry()
    payload = msgspec.json.encode(golden["payload"])
    decoded = registry.decode(golden["event_type"], golden["schema_version"], payload)
    again = json.loads(registry.encode(decoded)[2])
    kept = [
        (name, _as_written(value, golden["payload"][name], name))
        for name, value in again.items()
        if name in golden["payload"]
    ]
    assert kept == list(golden["payload"].items())


def test_a_value_outside_a_vocabulary_is_refused_naming_the_field() -> None:
    """A stored status that is not a `StageStatus` is a message error that names the field."""
    payload = b'{"type":"stage_completed","deployment_id":"d","stage_id":"s","status":"DONE"}'
    with pytest.raises(MessageError, match=r"Invalid enum value 'DONE' - at `\$\.status`"):
        default_registry().decode("stage_completed", 1, payload)


def test_every_registered_event_type_has_a_golden_file_at_its_current_version() -> None:
    """A registered event type without a golden file at its current version fails the suite."""
    registry = default_registry()
    missing = [
        golden_path(GOLDEN_DIR, tag, registry.current_version(tag)).name
        for tag in registry.tags()
        if not golden_path(GOLDEN_DIR, tag, registry.current_version(tag)).exists()
    ]
    assert not missing, (
        f"no golden file for {missing} in tests/golden/events: run `{MAKE_GOLDEN}`, "
        "review the sample values it wrote, and commit the new file(s)"
    )


def test_make_golden_writes_a_decodable_file_only_for_types_lacking_one(tmp_path: Path) -> None:
    """make_golden writes a file that passes the golden check, and never overwrites one."""
    registry = evolved_registry()
    written = write_missing(registry, [WidgetResized], tmp_path)
    assert written == [tmp_path / "test_widget_resized.v3.json"]
    check_golden(registry, written[0])
    golden = json.loads(written[0].read_text("utf-8"))
    assert (golden["event_type"], golden["schema_version"]) == ("test_widget_resized", 3)
    assert set(golden["expected"]) == set(WidgetResized.__struct_fields__)
    assert registry.decode("test_widget_resized", 3, msgspec.json.encode(golden["payload"])) == (
        sample_event(WidgetResized)
    )
    assert write_missing(registry, [WidgetResized], tmp_path) == []
