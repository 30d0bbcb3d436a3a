"""`python -m services.drift`: wiring only — settings, control config, the detector loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta

from services.drift.service import DriftDetector
from shared.config.secret_keys import key_ring
from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from shared.git import GitCache
from shared.runtime import Component, ServiceRuntime, run_service
from shared.settings import ServiceSettings
from shared.wiring import control_config, git_cache_dir

NAME = "drift"


class DriftSettings(ServiceSettings, frozen=True, kw_only=True):
    """The drift service's settings (`SLIPWAY_*` environment variables)."""

    control_config: str
    """Path of the control config: the repositories and the platform providers (kubeconfigs)."""
    git_cache_dir: str = ""
    """Where the bare clones live; empty means `<tmp>/slipway-drift-git`."""
    drift_interval_s: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    """How often every application's live state is compared with its git head."""


async def setup(runtime: ServiceRuntime[DriftSettings]) -> Sequence[Component]:
    """Wire the drift detector: its store, platforms and the interval loop."""
    settings = runtime.settings
    control = control_config(settings.control_config)
    detector = DriftDetector(
        store=EventStore(
            runtime.pool, default_registry(), max_event_bytes=runtime.settings.event_max_bytes
        ),
        git=GitCache(git_cache_dir(settings.git_cache_dir, "slipway-drift-git")),
        repositories={r.repo_id: r.remote for r in control.spec.repositories},
        branches={r.repo_id: r.branch for r in control.spec.repositories},
        platforms={p.name: p.config for p in control.spec.platform_providers},
        provider_labels={p.name: p.labels for p in control.spec.platform_providers},
        secret_keys=key_ring(control),
        interval_s=settings.drift_interval_s,
    )
    return [detector.run]


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, DriftSettings, setup))
