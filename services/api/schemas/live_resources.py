"""An application's live objects, as the drift service last recorded them
(docs/console.md, "Live resources").
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from shared.events.catalog import LiveResource


class ApplicationLiveResources(msgspec.Struct, frozen=True, kw_only=True):
    """The application's live objects as the drift service last recorded them
    (`application_live_resources_observed` on stream `liveresources-<id>`)."""

    application_id: str
    observed_at: datetime | None
    """When they were recorded; null (and no resources) before the drift service has looked."""
    resources: list[LiveResource]
    """Owners before what they own; `owners` are uids of other items (nest by them)."""
    truncated: int
    """Objects left out to keep the record bounded."""
