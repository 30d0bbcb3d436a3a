"""The ids derived from causes are part of the wire contract: pinned to the values they have
always had (computed by the copies this module replaced), so a rule edited in place fails."""

from __future__ import annotations

import uuid

from shared.events.ids import (
    analysis_id_of,
    analysis_request_event_id,
    drift_deployment_id,
    notification_id_of,
    on_command_deployment_id,
    on_commit_deployment_id,
    trigger_event_id,
)
from shared.events.streams import deployment_stream


def test_each_derived_id_is_what_it_always_was() -> None:
    """Old streams and inboxes keep matching: every rule gives the value it gave before."""
    assert on_commit_deployment_id("app", "c0ffee") == "cc0eb598a157529291458d95337399f0"
    assert on_command_deployment_id("app", "req-1") == "e6d48cad64a9521a8929a0a9d5940daa"
    assert drift_deployment_id("app", "c0ffee") == "driftb57757d359f2c203d3b89"
    assert trigger_event_id("d1") == uuid.UUID("206854de-f3a5-5cad-85ad-918ad240c961")
    assert analysis_id_of("d1", "stage-2") == "e1cf268e6f375937b5289dbe2731f591"
    assert analysis_request_event_id("e1cf268e6f375937b5289dbe2731f591") == uuid.UUID(
        "015b8818-625f-577a-adf3-efb53b742eb9"
    )
    assert (
        notification_id_of("0190a5c2-0000-7000-8000-000000000001", "slack")
        == "211449c5d2da55b5b5c07240e9215a88"
    )


def test_derived_deployment_ids_name_valid_streams() -> None:
    """Each derived deployment id fits a stream id (`deployment-<id>`) and a NATS token."""
    for deployment_id in (
        on_commit_deployment_id("a", "c"),
        on_command_deployment_id("a", "r"),
        drift_deployment_id("a", "c"),
    ):
        deployment_stream(deployment_id)  # ValueError if it could not name one
