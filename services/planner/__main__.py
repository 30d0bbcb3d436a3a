"""`python -m services.planner`: wiring only — settings, control config, consumer, retry sweep."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta

from services.planner.service import CONSUMER_NAME, HANDLES, Planner, RepositoryRef
from shared.errors import ConfigError
from shared.events.base import RecordedEvent
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
    """Applications planned at once (one application's events stay in order)."""


async def setup(runtime: ServiceRuntime[PlannerSettings]) -> Sequence[Component]:
    """Wire the planner: its queue, the plan workers and the retry sweep."""
    settings = runtime.settings
    # Each plan holds a connection and briefly takes a second (its queue place);
    # the retry sweep holds one more: fewer connections than that can deadlock.
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
    )
    consumer = events.consumer(
        CONSUMER_NAME,
        planner.handle,
        handles=HANDLES,
        # Enough for `planner_concurrency` applications at once; few more, so a slow
        # git fetch does not hold many messages past their ack wait.
        batch_size=max(8, 2 * settings.planner_concurrency),
        events_per_transaction=1,
        ack_wait_s=120.0,
        max_deliver=settings.planner_max_deliver,
        concurrency=settings.planner_concurrency,
        ordering_key=_application_of,
    )

    async def plan(stop: asyncio.Event) -> None:
        try:
            await consumer.run(stop)
        finally:
            # Shared checkouts outlive each plan: the last ones go with the consumer.
            await git.close()

    return [plan, planner.retry_waiting]


def _application_of(event: RecordedEvent) -> str:
    """The planner's work on one application is ordered; different ones are independent."""
    application_id = getattr(event.event, "application_id", "")
    return application_id if isinstance(application_id, str) else ""


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, PlannerSettings, setup))
