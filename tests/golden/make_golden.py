"""Write the golden file of each event type that lacks one at its current schema version.

    .venv/bin/python tests/golden/make_golden.py            # every registered type
    .venv/bin/python tests/golden/make_golden.py TAG [TAG…] # only these

A golden file pins what a stored payload of one (event type, schema version)
looks like and what it must decode to, so that a later change to the Struct
that would break reading old events fails `tests/property/test_codec.py`. Files are
never overwritten: once an event is stored somewhere, its golden file is
history. The sample values are built from the field types; edit them into
something realistic before committing, keeping `payload` and `expected` in
step (the test checks that one decodes to the other).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from shared.events.base import Event
from shared.events.catalog import ALL_EVENTS, default_registry
from shared.events.codec import EventRegistry, tag_of

GOLDEN_DIR = Path(__file__).resolve().parent / "events"
_SAMPLE_TIME = dt.datetime(2024, 5, 17, 9, 30, 0, tzinfo=dt.UTC)
_SAMPLE_NAMESPACE = uuid.UUID("0b5e3c1e-8d7a-4c2f-9a43-2f0d6c1b7e55")


def golden_path(directory: Path, tag: str, version: int) -> Path:
    return directory / f"{tag}.v{version}.json"


def _sample(t: msgspec.inspect.Type, name: str) -> Any:
    """A value of type `t` for the field `name`, recognisable in the file."""
    mi = msgspec.inspect
    if isinstance(t, mi.StrType):
        return f"{name}-example"[: t.max_length] if t.max_length else f"{name}-example"
    if isinstance(t, mi.BoolType):
        return True
    if isinstance(t, mi.IntType):
        return max(t.ge or 0, (t.gt or 0) + 1, 3)
    if isinstance(t, mi.FloatType):
        return 1.5
    if isinstance(t, mi.NoneType):
        return None
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.EnumType):
        return next(iter(t.cls))
    if isinstance(t, mi.UUIDType):
        return uuid.uuid5(_SAMPLE_NAMESPACE, name)
    if isinstance(t, mi.DateTimeType):
        return _SAMPLE_TIME
    if isinstance(t, mi.DateType):
        return _SAMPLE_TIME.date()
    if isinstance(t, mi.TupleType):
        return tuple(_sample(item, f"{name}{i}") for i, item in enumerate(t.item_types))
    if isinstance(t, mi.VarTupleType):
        return (_sample(t.item_type, f"{name}0"),)
    if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType)):
        container = {mi.ListType: list, mi.SetType: set, mi.FrozenSetType: frozenset}[type(t)]
        return container([_sample(t.item_type, f"{name}0")])
    if isinstance(t, mi.DictType):
        return {_sample(t.key_type, f"{name}-key"): _sample(t.value_type, f"{name}-value")}
    if isinstance(t, mi.UnionType):
        return _sample(next(x for x in t.types if not isinstance(x, mi.NoneType)), name)
    if isinstance(t, mi.StructType):
        return t.cls(**{f.name: _sample(f.type, f.name) for f in t.fields})
    raise SystemExit(
        f"make_golden: no sample for field {name!r} of type {t!r}; "
        "write this golden file by hand (see tests/golden/events/ for the format)"
    )


def sample_event(event_type: type[Event]) -> Event:
    """An instance of `event_type` with every field set, defaulted ones included."""
    info = msgspec.inspect.type_info(event_type)
    assert isinstance(info, msgspec.inspect.StructType)
    event: Event = event_type(**{f.name: _sample(f.type, f.name) for f in info.fields})
    return event


def golden_document(registry: EventRegistry, event: Event) -> dict[str, Any]:
    """The golden file's content: the payload as stored, and the fields it decodes to."""
    event_type, schema_version, payload = registry.encode(event)
    return {
        "event_type": event_type,
        "schema_version": schema_version,
        "payload": json.loads(payload),
        "expected": {
            name: json.loads(msgspec.json.encode(getattr(event, name)))
            for name in event.__struct_fields__
        },
    }


def write_missing(
    registry: EventRegistry,
    event_types: Iterable[type[Event]],
    directory: Path = GOLDEN_DIR,
    only: Iterable[str] | None = None,
) -> list[Path]:
    """Write a golden file for each registered type (or each tag in `only`) lacking one.

    Returns the files written.
    """
    by_tag = {tag_of(t): t for t in event_types if tag_of(t) in registry}
    wanted = sorted(by_tag) if only is None else sorted(only)
    if unknown := [tag for tag in wanted if tag not in by_tag]:
        raise SystemExit(f"make_golden: not registered event types: {unknown}")
    written = []
    for tag in wanted:
        path = golden_path(directory, tag, registry.current_version(tag))
        if path.exists():
            continue
        document = golden_document(registry, sample_event(by_tag[tag]))
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    written = write_missing(default_registry(), ALL_EVENTS, GOLDEN_DIR, argv or None)
    for path in written:
        print(f"wrote {path}; review its sample values, then commit it")
    if not written:
        print("every event type already has a golden file at its current version")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
