"""`python -m services.executor [--burst]`: wiring only — settings, control config, consumer,
scheduler. `--burst` runs the deployments planned so far, then exits."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta

from services.executor.handlers import HANDLES
from services.executor.script import ScriptPolicy
from services.executor.service import CONSUMER_NAME, STAGE_LOG_BATCH_S, Executor
from shared.config.secret_keys import key_ring
from shared.git import GitCache
from shared.runtime import Component, ServiceRuntime, run_service
from shared.settings import ServiceSettings
from shared.stagelog import StageLogs
from shared.wiring import EventWiring, control_config, git_cache_dir

NAME = "executor"


class ExecutorSettings(ServiceSettings, frozen=True, kw_only=True):
    """The executor's settings (`SLIPWAY_*` environment variables)."""

    control_config: str
    """Path of the control config: the repositories and the platform providers (kubeconfigs)."""
    git_cache_dir: str = ""
    """Where the bare clones live; empty means `<tmp>/slipway-executor-git`."""
    executor_lease_ttl_s: Annotated[float, Meta(gt=0, le=3600)] = 15.0
    """How long a deployment's lease lasts without renewal (a dead replica's are taken after)."""
    executor_poll_interval_s: Annotated[float, Meta(gt=0, le=60)] = 1.0
    """How often a runner re-reads its deployment's stream (requests seen by other replicas)."""
    executor_claim_interval_s: Annotated[float, Meta(gt=0, le=600)] = 2.0
    """How often a replica looks for deployments to take (new, or left by a dead replica)."""
    executor_max_concurrent: Annotated[int, Meta(ge=1, le=10_000)] = 16
    """Deployments one replica runs at once."""
    executor_rollout_timeout_s: Annotated[float, Meta(gt=0)] = 600.0
    """How long a stage waits for a workload's rollout before failing."""
    executor_max_deliver: Annotated[int, Meta(ge=1)] = 20
    """Deliveries of one event before it is dead-lettered."""
    executor_script_timeout_s: Annotated[float, Meta(gt=0)] = 6 * 3600.0
    """A SCRIPT_RUN's timeout when its `with.timeout` is zero or missing (PipeCD's 6h)."""
    executor_script_max_line_bytes: Annotated[int, Meta(ge=80)] = 4096
    """A longer line of a script's output is cut (the rest counted)."""
    executor_script_max_output_lines: Annotated[int, Meta(ge=1)] = 2000
    """Lines of a script's output one stage records (the rest counted)."""
    executor_script_max_output_bytes: Annotated[int, Meta(ge=1024)] = 1024 * 1024
    """Bytes of a script's output one stage records (the rest counted)."""
    executor_script_user: str = "nobody"
    """The unprivileged account scripts run as when the executor runs as root."""


async def setup(runtime: ServiceRuntime[ExecutorSettings]) -> Sequence[Component]:
    """Wire the executor: its store, leases, platforms and inbox consumer."""
    settings = runtime.settings
    control = control_config(settings.control_config)
    events = await EventWiring.start(runtime)

    async def backlog() -> int:
        return await events.backlog(CONSUMER_NAME)

    executor = Executor(
        store=events.store,
        stage_logs=StageLogs(
            runtime.pool, runtime.nc, runtime.subjects, batch_window_s=STAGE_LOG_BATCH_S
        ),
        git=GitCache(
            git_cache_dir(settings.git_cache_dir, "slipway-executor-git"), share_checkouts=True
        ),
        repositories={r.repo_id: r.remote for r in control.spec.repositories},
        platforms={p.name: p.config for p in control.spec.platform_providers},
        provider_labels={p.name: p.labels for p in control.spec.platform_providers},
        secret_keys=key_ring(control),
        holder=settings.instance,
        lease_ttl_s=settings.executor_lease_ttl_s,
        poll_s=settings.executor_poll_interval_s,
        claim_interval_s=settings.executor_claim_interval_s,
        max_concurrent=settings.executor_max_concurrent,
        rollout_timeout_s=settings.executor_rollout_timeout_s,
        backlog=backlog,
        script_policy=ScriptPolicy(
            default_timeout_s=settings.executor_script_timeout_s,
            max_line_bytes=settings.executor_script_max_line_bytes,
            max_lines=settings.executor_script_max_output_lines,
            max_bytes=settings.executor_script_max_output_bytes,
            run_as=settings.executor_script_user,
        ),
    )
    consumer = events.consumer(
        CONSUMER_NAME,
        executor.handle,
        after_commit=executor.after_commit,
        handles=HANDLES,
        max_deliver=settings.executor_max_deliver,
    )
    if not runtime.burst:
        return [consumer.run, executor.schedule]

    async def schedule_then_stop(stop: asyncio.Event) -> None:
        # Burst: run what is planned, then stop the whole service (the consumer too).
        await executor.schedule(stop, burst=True)
        runtime.request_stop("burst: no deployment left to run")

    return [consumer.run, schedule_then_stop]


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, ExecutorSettings, setup, burst="--burst" in sys.argv[1:]))
