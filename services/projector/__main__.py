"""`python -m services.projector`: keep every read model up to date with the log."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import Gauge

from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from shared.projections import default_projections
from shared.projections.group import ProjectionGroup
from shared.runtime import Component, ServiceRuntime, run_service
from shared.settings import ServiceSettings

NAME = "projector"


async def setup(runtime: ServiceRuntime[ServiceSettings]) -> Sequence[Component]:
    """Wire the projector: every projection's runner over the log."""
    store = EventStore(
        runtime.pool, default_registry(), max_event_bytes=runtime.settings.event_max_bytes
    )
    applied = Gauge(
        "slipway_projection_applied_events",
        "events applied by this replica since start",
        ["projection"],
        registry=runtime.metrics,
    )
    # One batch (one read of the log, one transaction) for every projection at a time: a
    # runner each would spend the round trips of a batch four times over.
    group = ProjectionGroup(store, default_projections())
    # Installs the projections' tables, or rebuilds them when this build carries a newer
    # version of a projection than the database has.
    await group.install()
    for name in group.runners:
        applied.labels(name).set_function(_applied_of(group, name))
    return [group.run]


def _applied_of(group: ProjectionGroup, name: str) -> Callable[[], float]:
    return lambda: float(group.applied[name])


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, ServiceSettings, setup))
