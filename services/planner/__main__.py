"""`python -m services.planner`: wiring only — settings, control config, consumer, retry sweep."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from msgspec import Meta

from services.planner.service import CONSUMER_NAME, Planner, RepositoryRef
from shared.config import load_control_config
from shared.consumer import EventConsumer
from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from shared.git import GitCache
from shared.messaging import ensure_event_stream
from shared.runtime import Component, ServiceRuntime, run_service
from shared.settings import ServiceSettings

NAME = "planner"


class PlannerSettings(ServiceSettings, frozen=True, kw_only=True):
    control_config: str
    """Path of the control config (`slipway.yaml` or PipeCD's `kind: Piped`): the repositories."""
    git_cache_dir: str = ""
    """Where the bare clones live; empty means `<tmp>/slipway-planner-git`."""
    planner_retry_interval_s: Annotated[float, Meta(gt=0, le=3600)] = 15.0
    """How often plans held up by git (or by a crash) are tried again."""
    planner_give_up_after_s: Annotated[float, Meta(gt=0)] = 900.0
    """How long a plan may be retried before it fails with git's reason."""
    planner_max_deliver: Annotated[int, Meta(ge=1)] = 100
    """Deliveries of one event before it is dead-lettered (the sweep retries plans after)."""


async def setup(runtime: ServiceRuntime[PlannerSettings]) -> Sequence[Component]:
    settings = runtime.settings
    control = load_control_config(Path(settings.control_config))
    repositories = {
        r.repo_id: RepositoryRef(remote=r.remote, branch=r.branch)
        for r in control.spec.repositories
    }
    cache_dir = settings.git_cache_dir or str(Path(tempfile.gettempdir()) / "slipway-planner-git")
    store = EventStore(runtime.pool, default_registry())
    planner = Planner(
        store=store,
        git=GitCache(cache_dir),
        repositories=repositories,
        control_config_path=settings.control_config,
        give_up_after_s=settings.planner_give_up_after_s,
        retry_interval_s=settings.planner_retry_interval_s,
        registry=runtime.metrics,
    )
    js = runtime.nc.jetstream()
    await ensure_event_stream(js, runtime.subjects)
    consumer = EventConsumer(
        name=CONSUMER_NAME,
        js=js,
        pool=runtime.pool,
        registry=store.registry,
        subjects=runtime.subjects,
        handler=planner.handle,
        filter_subjects=[
            runtime.subjects.events_of_type("deployment_triggered"),
            runtime.subjects.events_of_type("deployment_completed"),
        ],
        # One deployment at a time per application anyway; fetch few, so a slow
        # git fetch does not hold many messages past their ack wait.
        batch_size=8,
        events_per_transaction=1,
        ack_wait_s=120.0,
        max_deliver=settings.planner_max_deliver,
    )
    return [consumer.run, planner.retry_waiting]


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, PlannerSettings, setup))
