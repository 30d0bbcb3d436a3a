"""`python -m services.gitwatcher`: wiring only — settings, control config, connections, run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta

from services.gitwatcher.configs import (
    event_repositories,
    read_app_config,
    read_app_watchers,
    read_pipe_watchers,
    watched_repositories,
)
from services.gitwatcher.eventwatcher import EventWatcher
from services.gitwatcher.server import DEFAULT_MAX_BODY_BYTES
from services.gitwatcher.service import Gitwatcher
from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from shared.git import GitCache
from shared.logs import get_logger
from shared.runtime import Component, ServiceRuntime, run_service
from shared.settings import ServiceSettings
from shared.wiring import EventWiring, control_config, git_cache_dir

NAME = "gitwatcher"

log = get_logger(__name__)


class GitwatcherSettings(ServiceSettings, frozen=True, kw_only=True):
    """The gitwatcher's settings (`SLIPWAY_*` environment variables)."""

    control_config: str
    """Path of the control config (slipway.yaml, or PipeCD's Piped file): the repositories."""
    git_cache_dir: str = ""
    """Where the bare clones live; empty means `<tmp>/slipway-git-cache`."""
    gitwatcher_webhook_host: str = "127.0.0.1"
    gitwatcher_webhook_port: Annotated[int, Meta(ge=-1, le=65535)] = 0
    """0 picks a free port (logged); -1 disables the webhook endpoint."""
    gitwatcher_backoff_initial_s: Annotated[float, Meta(gt=0)] = 1.0
    gitwatcher_backoff_max_s: Annotated[float, Meta(gt=0)] = 300.0
    gitwatcher_git_timeout_s: Annotated[float, Meta(gt=0)] = 60.0
    gitwatcher_fetch_timeout_s: Annotated[float, Meta(gt=0)] = 300.0
    gitwatcher_webhook_reject_window_s: Annotated[float, Meta(ge=0)] = 60.0
    gitwatcher_webhook_max_body_bytes: Annotated[int, Meta(ge=1024, le=25 * 1024 * 1024)] = (
        DEFAULT_MAX_BODY_BYTES
    )
    """A delivery over this many bytes is refused (413) before more of it is read."""


async def setup(runtime: ServiceRuntime[GitwatcherSettings]) -> Sequence[Component]:
    """Wire the gitwatcher: the repositories it polls, the webhook server, the event watcher."""
    settings = runtime.settings
    # A control config that will not load, or a repository that cannot be watched
    # (a bad repoId, an unreadable webhook secret file), ends the process with
    # EX_CONFIG: the runtime logs it as `config_invalid`.
    control = control_config(settings.control_config)
    repositories = watched_repositories(control)
    cache_dir = git_cache_dir(settings.git_cache_dir, "slipway-git-cache")
    gitwatcher = Gitwatcher(
        store=EventStore(
            runtime.pool, default_registry(), max_event_bytes=runtime.settings.event_max_bytes
        ),
        cache=GitCache(
            cache_dir,
            timeout_s=settings.gitwatcher_git_timeout_s,
            fetch_timeout_s=settings.gitwatcher_fetch_timeout_s,
        ),
        repositories=repositories,
        read_config=read_app_config,
        backoff_initial_s=settings.gitwatcher_backoff_initial_s,
        backoff_max_s=settings.gitwatcher_backoff_max_s,
        registry=runtime.metrics,
    )
    log.info(
        "repositories_configured",
        repositories=sorted(gitwatcher.watchers),
        cache_dir=cache_dir,
    )
    if runtime.burst:
        return gitwatcher.burst_components()
    event_watcher = EventWatcher(
        store=gitwatcher.store,
        repositories=event_repositories(
            control, {i: (w.git, w.spec.branch) for i, w in gitwatcher.watchers.items()}
        ),
        read_app_watchers=read_app_watchers,
        read_pipe_watchers=read_pipe_watchers,
        metrics=gitwatcher.metrics,
    )
    events = await EventWiring.start(runtime)
    components: list[Component] = [
        event_watcher.consumer(
            js=events.js,
            subjects=runtime.subjects,
            inbox_retention_s=runtime.settings.consumer_inbox_retention_s,
        ).run,
        *gitwatcher.poll_components(),
        gitwatcher.sync_consumer(
            js=events.js,
            subjects=runtime.subjects,
            inbox_retention_s=runtime.settings.consumer_inbox_retention_s,
        ).run,
        gitwatcher.chain_consumer(
            js=events.js,
            subjects=runtime.subjects,
            inbox_retention_s=runtime.settings.consumer_inbox_retention_s,
        ).run,
    ]
    if settings.gitwatcher_webhook_port >= 0:
        server = gitwatcher.webhook_server(
            host=settings.gitwatcher_webhook_host,
            port=settings.gitwatcher_webhook_port,
            reject_record_window_s=settings.gitwatcher_webhook_reject_window_s,
            max_body_bytes=settings.gitwatcher_webhook_max_body_bytes,
        )
        components.append(server.run)
    return components


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, GitwatcherSettings, setup))
