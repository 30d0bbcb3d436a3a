"""`python -m services.projector`: keep every read model up to date with the log."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import Gauge

from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from shared.projections import ProjectionRunner, default_projections
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
    components: list[Component] = []
    for projection in default_projections():
        runner = ProjectionRunner(store, projection)
        # Installs the projection's tables, or rebuilds them when this build
        # carries a newer version of the projection than the database has.
        await runner.install()
        applied.labels(projection.name).set_function(_applied_of(runner))
        components.append(runner.run)
    return components


def _applied_of(runner: ProjectionRunner) -> Callable[[], float]:
    return lambda: float(runner.applied)


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, ServiceSettings, setup))
