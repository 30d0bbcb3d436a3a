"""The executor's async shell: take planned deployments, hold their leases, run their stages.

Three parts:

- the consumer's `handle`: a `DeploymentPlanned` makes the deployment
  runnable (a row of `executor_leases`, in the consumer's transaction, so it
  is recorded exactly once); a request (cancel, approve, skip) pokes the
  deployment's runner if this replica runs it (others see it at their next
  poll of the stream);
- `schedule`, a component (`shared.scheduling.LeaseScheduler`): claims
  runnable deployments — new ones, and those whose holder's lease expired (a
  replica that died) — up to `max_concurrent`, and runs a `DeploymentRunner`
  for each;
- the stage work: stage executors (`stages.py`) against the application's
  clusters — its platform provider and those its `resourceRoutes` name
  (`shared.platform.clusters`) — with the deploy source loaded from git at the commit.

Two replicas never run one deployment at once: a deployment is run only by
the holder of its lease, and everything a runner writes is fenced by the
lease's token (`leases.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from services.executor.decider import Deployment, StageStatus
from services.executor.handlers import Register, WakeRunner, on_event
from services.executor.leases import Lease, Leases
from services.executor.registrations import Registrations
from services.executor.runner import DeploymentRunner
from services.executor.script import ScriptPolicy
from services.executor.stages import (
    ANALYSIS_GRACE_S,
    Sources,
    StageContext,
    StageResult,
    run_stage,
)
from shared.config.control import KubernetesProviderConfig, configured
from shared.deploysource import DeploySource, Reveal, commit_unavailable_as_config_error
from shared.errors import ConfigError
from shared.eventlog import EventStore
from shared.events.base import RecordedEvent
from shared.git import GitCache, GitError
from shared.logs import get_logger
from shared.platform import RoutedPlatform
from shared.platform.clusters import Clusters
from shared.scheduling import LeaseScheduler
from shared.secrets import KeyRing
from shared.stagelog import StageLogs

__all__ = ["CONSUMER_NAME", "STAGE_LOG_BATCH_S", "Executor"]

log = get_logger("slipway.executor")

CONSUMER_NAME: Final = "executor"

STAGE_LOG_BATCH_S: Final = 0.2
"""How long a stage's log line may wait to be stored with the next ones (`shared.stagelog`):
live tailing lags by that much at most; a stage's lines are stored before it completes."""


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
        provider_labels: Mapping[str, Mapping[str, str]] | None = None,
        lease_ttl_s: float = 15.0,
        poll_s: float = 1.0,
        claim_interval_s: float = 2.0,
        max_concurrent: int = 16,
        rollout_timeout_s: float = 600.0,
        analysis_grace_s: float = ANALYSIS_GRACE_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        backlog: Callable[[], Awaitable[int]] | None = None,
        script_policy: ScriptPolicy | None = None,
        secret_keys: KeyRing | None = None,
    ) -> None:
        self.store = store
        self.stage_logs = stage_logs
        self.registrations = Registrations(store)
        self.git = git
        self.repositories = dict(repositories)
        # The providers' labels: `resourceRoutes` may pick providers by them.
        self.clusters = Clusters(platforms, provider_labels)
        # Decrypts encryptedSecrets into the manifests applied (never the planner's).
        self.reveal = Reveal(secret_keys)
        self.holder = holder
        self.leases = Leases(store, holder, ttl_s=lease_ttl_s)
        self.poll_s = poll_s
        self.rollout_timeout_s = rollout_timeout_s
        self.analysis_grace_s = analysis_grace_s
        self.clock = clock
        self.script_policy = script_policy or ScriptPolicy()
        self.runners: dict[str, DeploymentRunner] = {}
        self.scheduler = LeaseScheduler(
            self.leases,
            start=self._start_runner,
            forget=self._forget_runner,
            claim_interval_s=claim_interval_s,
            max_concurrent=max_concurrent,
            backlog=backlog,
            log=log,
        )
        self._sources: dict[str, Sources] = {}

    # The consumer -------------------------------------------------------------------------

    async def handle(self, event: RecordedEvent, conn: asyncpg.Connection) -> None:
        """Handle one event inside the consumer's transaction."""
        match on_event(event.event):
            case Register(deployment_id=deployment_id, application_id=application_id):
                await Leases.register(conn, deployment_id, application_id)
                # Queue bookkeeping: `deployment_taken` is the line operators follow.
                log.debug("deployment_registered", deployment_id=deployment_id)
            case _:
                pass

    async def after_commit(self, event: RecordedEvent) -> None:
        """Once the consumer's transaction committed: wake whoever can act on it."""
        match on_event(event.event):
            case Register():
                self.scheduler.wake()
            case WakeRunner(deployment_id=deployment_id):
                runner = self.runners.get(deployment_id)
                if runner is not None:
                    runner.poke.set()
            case _:
                pass

    # The scheduler ------------------------------------------------------------------------

    @property
    def ran(self) -> list[str]:
        """Every deployment this replica took up, in order (for tests and metrics)."""
        return self.scheduler.ran

    async def schedule(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        """Component: claim runnable deployments and run them, until `stop` (or, in burst
        mode, until nothing is left to run)."""
        try:
            await self.scheduler.run(stop, burst=burst)
        finally:
            await self.close()

    def _start_runner(self, lease: Lease, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
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
        self.runners[lease.deployment_id] = runner
        return runner.run(stop)

    def _forget_runner(self, deployment_id: str) -> None:
        self.runners.pop(deployment_id, None)
        self._sources.pop(deployment_id, None)

    async def close(self) -> None:
        """Store the stage log lines still buffered; close the platform clients (the
        scheduler does it when it returns)."""
        await self.stage_logs.flush()
        await self.clusters.close()

    # Stage work ---------------------------------------------------------------------------

    async def _stage_work(self, state: Deployment, stage_id: str) -> StageResult:
        stage = state.stage(stage_id)
        assert stage is not None
        logger = self.stage_logs.for_stage(state.deployment_id, stage_id)
        await logger.info(f"Stage {stage.name} ({stage.id}) started by {self.holder}")
        try:
            sources = await self._sources_of(state)
            _, provider, pipecd_application_id = await self._application(state.application_id)
            self.clusters.provider_of(provider)  # none at all fails before any work
        except ConfigError as exc:
            await logger.error(str(exc))
            return StageResult(StageStatus.FAILURE, str(exc))

        async def platforms(source: DeploySource) -> RoutedPlatform:
            return await self._platform_for(state, sources, provider, source)

        ctx = StageContext(
            deployment=state,
            stage=stage,
            log=logger,
            sources=sources,
            platforms=platforms,
            rollout_timeout_s=self.rollout_timeout_s,
            store=self.store,
            poll_s=self.poll_s,
            analysis_grace_s=self.analysis_grace_s,
            clock=self.clock,
            script_policy=self.script_policy,
            pipecd_application_id=pipecd_application_id,
        )
        return await run_stage(ctx)

    async def _load_timeout(self, state: Deployment) -> float:
        sources = await self._sources_of(state)
        with commit_unavailable_as_config_error(state.commit_hash):
            source = await sources.at(state.commit_hash)
        return source.config.spec.timeout.seconds

    async def _sources_of(self, state: Deployment) -> Sources:
        sources = self._sources.get(state.deployment_id)
        if sources is not None:
            return sources
        repository_id = state.repository_id or (await self._application(state.application_id))[0]
        remote = configured(self.repositories, repository_id, "repository")
        sources = Sources(self.git, remote, state.path, state.config_filename, self.reveal)
        self._sources[state.deployment_id] = sources
        return sources

    async def _platform_for(
        self, state: Deployment, sources: Sources, provider: str, source: DeploySource
    ) -> RoutedPlatform:
        """The clusters as `source`'s routes place its objects; live state also covers the
        providers the deployment's commit routes to (a rollback to the running commit
        still finds the canary wherever the new routes put it)."""
        router = self.clusters.router(source.config, provider, config_text=source.config_text)
        also: tuple[str, ...] = ()
        if source.commit != state.commit_hash:
            try:
                target = await sources.at(state.commit_hash)
                config, text = target.config, target.config_text
                also = self.clusters.router(config, provider, config_text=text).providers
            except (ConfigError, GitError):
                also = ()  # the rollback still returns to what it can route
        return await self.clusters.routed(router, also_listed=also)

    async def _application(self, application_id: str) -> tuple[str, str, str]:
        """(repository_id, platform_provider) of the application, from its latest registration,
        and the PipeCD id its latest adoption (`slipway app import`) names ("" if none)."""
        registration = await self.registrations.of(application_id)
        return (
            registration.repository_id,
            registration.platform_provider,
            registration.pipecd_application_id,
        )
