"""What every stage's work is given and gives back: its context, its result, its failure.

`StageContext` carries the deployment, the stage, its log, the sources at the
commits, the application's clusters (routed by the `resourceRoutes` of the commit
whose manifests are applied) and (for ANALYSIS) the event store; an executor returns
a `StageResult` or raises `StageFailed` with a reason a person can act on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from services.executor.decider import Deployment, Stage, StageStatus
from services.executor.script import (
    ScriptPolicy,
)
from shared.deploysource import (
    DeploySource,
    Reveal,
    ensure_commit,
    load_deploy_source,
    register_secrets,
)
from shared.errors import ConfigError, SlipwayError
from shared.eventlog import EventStore
from shared.git import GitCache, GitError
from shared.platform import AppliedResource, RoutedPlatform
from shared.stagelog import StageLogger

ANALYSIS_GRACE_S: Final = 300.0
"""How long past its `duration` an ANALYSIS waits for the analysis service's verdict."""


@dataclass(frozen=True)
class StageResult:
    """How a stage's work ended: its status and why."""

    status: StageStatus
    reason: str = ""


class StageFailed(SlipwayError):
    """Ends a stage as FAILURE with `reason` (raised inside an executor, caught by `run_stage`)."""


class Sources:
    """The application's config and manifests at a commit, loaded once per commit."""

    def __init__(
        self, git: GitCache, remote: str, path: str, config_filename: str, reveal: Reveal
    ) -> None:
        self.git = git
        # Encrypted secrets decrypted into the manifests applied (the planner only masks).
        self.reveal = reveal
        self.remote = remote
        self.path = path
        self.config_filename = config_filename
        self._loaded: dict[str, DeploySource] = {}

    async def at(self, commit: str) -> DeploySource:
        """Raises `ConfigError` (fix the config) or `GitError` (git could not give the commit)."""
        source = self._loaded.get(commit)
        if source is None:
            repo = self.git.repository(self.remote)
            full = await ensure_commit(repo, commit)
            source = await load_deploy_source(
                repo, full, self.path, self.config_filename, reveal=self.reveal
            )
            register_secrets(source)
            self._loaded[commit] = source
        return source


@dataclass
class StageContext:
    """What a stage's work gets: the deployment, its stage, its log, manifests and platforms."""

    deployment: Deployment
    stage: Stage
    log: StageLogger
    sources: Sources
    platforms: Callable[[DeploySource], Awaitable[RoutedPlatform]]
    """The clusters as `source`'s `resourceRoutes` place its objects (`platform`)."""
    rollout_timeout_s: float = 600.0
    applied: list[AppliedResource] = field(default_factory=list)
    # ANALYSIS: where the request is appended and the verdict read, how often it is read.
    store: EventStore | None = None
    poll_s: float = 1.0
    analysis_grace_s: float = ANALYSIS_GRACE_S
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    script_policy: ScriptPolicy = field(default_factory=ScriptPolicy)
    # The PipeCD id of an application taken over with `slipway app import` ("" if none):
    # written as `pipecd.dev/application`, so the objects keep the identity PipeCD gave them.
    pipecd_application_id: str = ""

    @property
    def commit(self) -> str:
        """The deployment's commit."""
        return self.deployment.commit_hash

    async def platform(self, source: DeploySource) -> RoutedPlatform:
        """Where `source`'s objects go; a route no provider answers fails the stage."""
        try:
            return await self.platforms(source)
        except ConfigError as exc:
            raise StageFailed(str(exc)) from exc

    async def target(self) -> DeploySource:
        """The manifests and config at the deployment's commit."""
        return await self._source(self.commit, "the deployment's commit")

    async def running(self) -> DeploySource:
        """The manifests and config at the running commit (for baselines and rollbacks)."""
        return await self._source(self.deployment.running_commit_hash, "the running commit")

    async def _source(self, commit: str, what: str) -> DeploySource:
        await self.log.info(f"Loading manifests at {what} {commit[:12]}")
        try:
            source = await self.sources.at(commit)
        except (ConfigError, GitError) as exc:
            raise StageFailed(f"cannot load {what} {commit[:12]}: {exc}") from exc
        await self.log.success(f"Loaded {len(source.manifests)} manifests")
        return source


Executor = Callable[[StageContext], Awaitable[StageResult]]
"""A stage kind's work."""


def seconds_text(seconds: float) -> str:
    """Seconds as a short text (`30s`, `1.5s`)."""
    return f"{seconds:g}s"
