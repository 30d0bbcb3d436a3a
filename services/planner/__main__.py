"""`python -m services.planner`: wiring only — settings, control config, consumer, retry sweep."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta

from services.planner.service import CONSUMER_NAME, HANDLES, Planner, RepositoryRef, ordering_key
from shared.errors import ConfigError
from shared.git import GitCache
from shared.runtime import Component, ServiceRuntime, run_service
from shared.settings import ServiceSettings
from shared.wiring import EventWiring, control_config, git_cache_dir

NAME = "planner"


class PlannerSettings(ServiceSettings, frozen=True, kw_only=True):
    """The planner's settings (`SLIPWAY_*` environment variables)."""

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
    planner_concurrency: Annotated[int, Meta(ge=1, le=64)] = 4
    """Applications whose plans are made at once before a batch's transaction."""
    planner_batch_size: Annotated[int, Meta(ge=1, le=1000)] = 64
    """Events fetched, prepared and handled in one transaction."""


async def setup(runtime: ServiceRuntime[PlannerSettings]) -> Sequence[Component]:
    """Wire the planner: its queue, the plan workers and the retry sweep."""
    settings = runtime.settings
    # Each plan made at once holds a connection, the batch's transaction one more, and
    # the retry sweep one more: fewer connections than that can deadlock.
    if settings.planner_concurrency + 2 > settings.database_pool_size:
        raise ConfigError(
            f"SLIPWAY_PLANNER_CONCURRENCY={settings.planner_concurrency} needs "
            f"SLIPWAY_DATABASE_POOL_SIZE >= {settings.planner_concurrency + 2} "
            f"(it is {settings.database_pool_size})"
        )
    control = control_config(settings.control_config)
    repositories = {
        r.repo_id: RepositoryRef(remote=r.remote, branch=r.branch)
        for r in control.spec.repositories
    }
    events = await EventWiring.start(runtime)
    # Plans only read checkouts: the apps of one commit share one.
    git = GitCache(
        git_cache_dir(settings.git_cache_dir, "slipway-planner-git"), share_checkouts=True
    )
    planner = Planner(
        store=events.store,
        git=git,
        repositories=repositories,
        control_config_path=settings.control_config,
        platform_providers={p.name: p.labels for p in control.spec.platform_providers},
        give_up_after_s=settings.planner_give_up_after_s,
        retry_interval_s=settings.planner_retry_interval_s,
        registry=runtime.metrics,
        prepare_concurrency=settings.planner_concurrency,
    )
    consumer = events.consumer(
        CONSUMER_NAME,
        planner.handle,
        handles=HANDLES,
        # A batch's plans are made before its one transaction (`Planner.prepare`), so
        # the transaction does no slow work and can hold the whole batch; the heartbeat
        # keeps its messages from redelivery while git works.
        batch_size=settings.planner_batch_size,
        events_per_transaction=settings.planner_batch_size,
        ack_wait_s=120.0,
        max_deliver=settings.planner_max_deliver,
        ordering_key=ordering_key,
        prepare=planner.prepare,
    )

    async def plan(stop: asyncio.Event) -> None:
        try:
            await consumer.run(stop)
        finally:
            # Shared checkouts outlive each plan: the last ones go with the consumer.
            await git.close()

    return [plan, planner.retry_waiting]


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, PlannerSettings, setup))
