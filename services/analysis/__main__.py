"""`python -m services.analysis [--burst]`: wiring only — settings, control config, consumer,
scheduler. `--burst` runs the analyses requested so far, then exits."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta

from services.analysis.service import CONSUMER_NAME, HANDLES, AnalysisService
from shared.egress import EgressPolicy
from shared.git import GitCache
from shared.runtime import Component, ServiceRuntime, run_service
from shared.settings import ServiceSettings
from shared.stagelog import StageLogs
from shared.wiring import EventWiring, control_config, git_cache_dir

NAME = "analysis"


class AnalysisSettings(ServiceSettings, frozen=True, kw_only=True):
    """The analysis service's settings (`SLIPWAY_*` environment variables)."""

    control_config: str
    """Path of the control config: repositories and analysis providers (Prometheus)."""
    git_cache_dir: str = ""
    """Where the bare clones live; empty means `<tmp>/slipway-analysis-git`."""
    analysis_lease_ttl_s: Annotated[float, Meta(gt=0, le=3600)] = 15.0
    """How long an analysis' lease lasts without renewal (a dead replica's are taken after)."""
    analysis_poll_interval_s: Annotated[float, Meta(gt=0, le=60)] = 1.0
    """Longest sleep between two looks at a running analysis (to notice a cancelled stage)."""
    analysis_claim_interval_s: Annotated[float, Meta(gt=0, le=600)] = 2.0
    """How often a replica looks for analyses to take (new, or left by a dead replica)."""
    analysis_max_concurrent: Annotated[int, Meta(ge=1, le=10_000)] = 64
    """Analyses one replica runs at once."""
    analysis_max_deliver: Annotated[int, Meta(ge=1)] = 20
    """Deliveries of one event before it is dead-lettered."""


async def setup(runtime: ServiceRuntime[AnalysisSettings]) -> Sequence[Component]:
    """Wire the analysis service: its store, leases, scheduler and Prometheus client."""
    settings = runtime.settings
    control = control_config(settings.control_config)
    events = await EventWiring.start(runtime)
    service = AnalysisService(
        store=events.store,
        stage_logs=StageLogs(runtime.pool, runtime.nc, runtime.subjects),
        git=GitCache(
            git_cache_dir(settings.git_cache_dir, "slipway-analysis-git"), share_checkouts=True
        ),
        repositories={r.repo_id: r.remote for r in control.spec.repositories},
        providers={p.name: p for p in control.spec.analysis_providers},
        holder=settings.instance,
        egress=EgressPolicy.from_entries(control.spec.analysis_egress.allow),
        lease_ttl_s=settings.analysis_lease_ttl_s,
        poll_s=settings.analysis_poll_interval_s,
        claim_interval_s=settings.analysis_claim_interval_s,
        max_concurrent=settings.analysis_max_concurrent,
    )
    consumer = events.consumer(
        CONSUMER_NAME,
        service.handle,
        after_commit=service.after_commit,
        handles=HANDLES,
        max_deliver=settings.analysis_max_deliver,
    )
    if not runtime.burst:
        return [consumer.run, service.schedule]

    async def schedule_then_stop(stop: asyncio.Event) -> None:
        await service.schedule(stop, burst=True)
        runtime.request_stop("burst: no analysis left to run")

    return [consumer.run, schedule_then_stop]


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, AnalysisSettings, setup, burst="--burst" in sys.argv[1:]))
