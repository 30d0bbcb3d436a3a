"""The executor's async shell: take planned deployments, hold their leases, run their stages.

Three parts:

- the consumer's `handle`: a `DeploymentPlanned` makes the deployment
  runnable (a row of `executor_leases`, in the consumer's transaction, so it
  is recorded exactly once); a request (cancel, approve, skip) pokes the
  deployment's runner if this replica runs it (others see it at their next
  poll of the stream);
- `schedule`, a component: claims runnable deployments — new ones, and those
  whose holder's lease expired (a replica that died) — up to
  `max_concurrent`, and runs a `DeploymentRunner` for each;
- the stage work: stage executors (`stages.py`) against the application's
  platform provider, with the deploy source loaded from git at the commit.

Two replicas never run one deployment at once: a deployment is run only by
the holder of its lease, and everything a runner writes is fenced by the
lease's token (`leases.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Final

import asyncpg

from services.executor.decider import Deployment, StageStatus
from services.executor.handlers import Register, WakeRunner, on_event
from services.executor.leases import Lease, Leases
from services.executor.runner import DeploymentRunner
from services.executor.stages import (
    ANALYSIS_GRACE_S,
    Sources,
    StageContext,
    StageResult,
    run_stage,
)
from shared.config.control import KubernetesProviderConfig
from shared.errors import ConfigError, Unavailable
from shared.eventlog import EventStore
from shared.events.base import RecordedEvent
from shared.events.catalog import ApplicationRegistered
from shared.git import GitCache, GitError
from shared.logs import get_logger
from shared.platform import KubernetesPlatform
from shared.stagelog import StageLogs
from shared.streams import stream_id

__all__ = ["COMMAND_EVENTS", "CONSUMER_NAME", "Executor"]

log = get_logger("slipway.executor")

CONSUMER_NAME: Final = "executor"
COMMAND_EVENTS: Final = (
    "deployment_cancel_requested",
    "stage_approved",
    "stage_skip_requested",
)
"""Requests people make of a running deployment; consumed to wake its runner quickly."""


class Executor:
    """Runs planned deployments: the consumer's handler, the scheduler, the stage work."""

    def __init__(
        self,
        *,
        store: EventStore,
        stage_logs: StageLogs,
        git: GitCache,
        repositories: Mapping[str, str],
        platforms: Mapping[str, KubernetesProviderConfig],
        holder: str,
        lease_ttl_s: float = 15.0,
        poll_s: float = 1.0,
        claim_interval_s: float = 2.0,
        max_concurrent: int = 16,
        rollout_timeout_s: float = 600.0,
        analysis_grace_s: float = ANALYSIS_GRACE_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        backlog: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self.store = store
        self.stage_logs = stage_logs
        self.git = git
        self.repositories = dict(repositories)
        self.platform_configs = dict(platforms)
        self.holder = holder
        self.leases = Leases(store, holder, ttl_s=lease_ttl_s)
        self.poll_s = poll_s
        self.claim_interval_s = claim_interval_s
        self.max_concurrent = max_concurrent
        self.rollout_timeout_s = rollout_timeout_s
        self.analysis_grace_s = analysis_grace_s
        self.clock = clock
        self.backlog = backlog
        self.runners: dict[str, DeploymentRunner] = {}
        self.ran: list[str] = []
        """Every deployment this replica took up, in order (for tests and metrics)."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._platforms: dict[str, KubernetesPlatform] = {}
        self._sources: dict[str, Sources] = {}

    # The consumer -------------------------------------------------------------------------

    async def handle(self, event: RecordedEvent, conn: asyncpg.Connection) -> None:
        """Handle one event inside the consumer's transaction."""
        match on_event(event.event):
            case Register(deployment_id=deployment_id, application_id=application_id):
                await Leases.register(conn, deployment_id, application_id)
                log.info("deployment_registered", deployment_id=deployment_id)
            case _:
                pass

    async def after_commit(self, event: RecordedEvent) -> None:
        """Once the consumer's transaction committed: wake whoever can act on it."""
        match on_event(event.event):
            case Register():
                self._wake.set()
            case WakeRunner(deployment_id=deployment_id):
                runner = self.runners.get(deployment_id)
                if runner is not None:
                    runner.poke.set()
            case _:
                pass

    # The scheduler ------------------------------------------------------------------------

    async def schedule(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        """Component: claim runnable deployments and run them, until `stop` (or, in burst
        mode, until nothing is left to run)."""
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self._claim(stop)
                    if burst and await self._idle():
                        log.info("burst_done", ran=len(self.ran))
                        return
                except Unavailable as exc:
                    log.warning("claim_unavailable", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.claim_interval_s)
        finally:
            # The runners see `stop` too; they finish (releasing their leases) before we return.
            if self._tasks:
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            await self.close()

    async def _claim(self, stop: asyncio.Event) -> None:
        free = self.max_concurrent - len(self._tasks)
        for lease in await self.leases.claim(free, running=list(self._tasks)):
            self._start_runner(lease, stop)

    async def _idle(self) -> bool:
        if self._tasks:
            return False
        if self.backlog is not None and await self.backlog() > 0:
            return False
        return await self.leases.open_count() == 0

    def _start_runner(self, lease: Lease, stop: asyncio.Event) -> None:
        runner = DeploymentRunner(
            lease=lease,
            store=self.store,
            leases=self.leases,
            work=self._stage_work,
            load_timeout=self._load_timeout,
            executor_name=self.holder,
            poll_s=self.poll_s,
            clock=self.clock,
            stage_logs=self.stage_logs,
        )
        deployment_id = lease.deployment_id
        self.runners[deployment_id] = runner
        self.ran.append(deployment_id)
        task = asyncio.create_task(runner.run(stop), name=f"deployment {deployment_id}")
        self._tasks[deployment_id] = task
        task.add_done_callback(lambda t: self._runner_done(deployment_id, t))

    def _runner_done(self, deployment_id: str, task: asyncio.Task[None]) -> None:
        self.runners.pop(deployment_id, None)
        self._tasks.pop(deployment_id, None)
        self._sources.pop(deployment_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("runner_crashed", deployment_id=deployment_id, error=repr(exc))
        self._wake.set()  # room for another, or a crashed one to take again

    async def close(self) -> None:
        """Close the platform clients (the scheduler does it when it returns)."""
        platforms, self._platforms = self._platforms, {}
        for platform in platforms.values():
            with contextlib.suppress(Exception):
                await platform.close()

    # Stage work ---------------------------------------------------------------------------

    async def _stage_work(self, state: Deployment, stage_id: str) -> StageResult:
        stage = state.stage(stage_id)
        assert stage is not None
        logger = self.stage_logs.for_stage(state.deployment_id, stage_id)
        await logger.info(f"Stage {stage.name} ({stage.id}) started by {self.holder}")
        try:
            sources = await self._sources_of(state)
            platform = await self._platform_of(state.application_id)
        except ConfigError as exc:
            await logger.error(str(exc))
            return StageResult(StageStatus.FAILURE, str(exc))
        ctx = StageContext(
            deployment=state,
            stage=stage,
            log=logger,
            sources=sources,
            platform=platform,
            rollout_timeout_s=self.rollout_timeout_s,
            store=self.store,
            poll_s=self.poll_s,
            analysis_grace_s=self.analysis_grace_s,
            clock=self.clock,
        )
        return await run_stage(ctx)

    async def _load_timeout(self, state: Deployment) -> float:
        sources = await self._sources_of(state)
        try:
            source = await sources.at(state.commit_hash)
        except GitError as exc:
            if exc.kind in ("not_found", "auth"):
                raise ConfigError(
                    f"git cannot give commit {state.commit_hash[:12]}: {exc}"
                ) from exc
            raise
        return source.config.spec.timeout.seconds

    async def _sources_of(self, state: Deployment) -> Sources:
        sources = self._sources.get(state.deployment_id)
        if sources is not None:
            return sources
        repository_id = state.repository_id or (await self._application(state.application_id))[0]
        remote = self.repositories.get(repository_id)
        if remote is None:
            known = ", ".join(sorted(self.repositories)) or "none"
            raise ConfigError(
                f"repository {repository_id!r} is not in the control config (known: {known})"
            )
        sources = Sources(self.git, remote, state.path, state.config_filename)
        self._sources[state.deployment_id] = sources
        return sources

    async def _platform_of(self, application_id: str) -> KubernetesPlatform:
        _, provider = await self._application(application_id)
        name = provider or next(iter(self.platform_configs), "")
        config = self.platform_configs.get(name)
        if config is None:
            known = ", ".join(sorted(self.platform_configs)) or "none"
            raise ConfigError(
                f"platform provider {name!r} is not in the control config (known: {known})"
            )
        platform = self._platforms.get(name)
        if platform is None:
            if not config.kubeconfig_path:
                raise ConfigError(f"platform provider {name!r} has no kubeconfigPath")
            platform = KubernetesPlatform(config.kubeconfig_path or None, config.context or None)
            await platform.open()
            self._platforms[name] = platform
        return platform

    async def _application(self, application_id: str) -> tuple[str, str]:
        """(repository_id, platform_provider) of the application, from its latest registration."""
        history = await self.store.read_stream(stream_id("application", application_id))
        registered = [e.event for e in history if isinstance(e.event, ApplicationRegistered)]
        if not registered:
            return "", ""
        return registered[-1].repository_id, registered[-1].platform_provider
