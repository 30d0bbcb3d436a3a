"""Events and their envelopes stay out of the cycle collector (a replay decodes millions)."""

from __future__ import annotations

import gc
import uuid
from datetime import UTC, datetime

import pytest

from shared.events import Event
from shared.events.base import Metadata, RecordedEvent
from shared.events.catalog import ALL_EVENTS, default_registry
from tests.golden.make_golden import sample_event


@pytest.mark.parametrize("event_type", ALL_EVENTS, ids=lambda t: t.__name__)
def test_a_decoded_event_is_not_tracked_by_the_cycle_collector(event_type: type[Event]) -> None:
    registry = default_registry()
    tag, version, payload = registry.encode(sample_event(event_type))
    decoded = registry.decode(tag, version, payload)
    recorded = RecordedEvent(
        global_position=1,
        tx_id=1,
        stream_id="s-1",
        stream_version=0,
        event_id=uuid.uuid4(),
        event_type=tag,
        schema_version=version,
        event=decoded,
        metadata=Metadata(actor="me"),
        recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert not gc.is_tracked(decoded)
    assert not gc.is_tracked(recorded)
    assert not gc.is_tracked(recorded.metadata)
