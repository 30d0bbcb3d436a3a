"""What a trigger deploys: the application, its repository, and the config and manifests at
the trigger's commit and at the running one, made into a `shared.planning.Plan`.

All of it is I/O (the log, git, rendering); the rules that choose a strategy
and its stages are `shared.planning`'s. A problem a person must fix is a
`PlanError` (or `ConfigError`, `Rejected`) naming what and where; git being
unreachable is `Unavailable`, which the planner waits out for a while.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.planner.decider import trigger_info
from shared.applications import Application, RecordedApplication
from shared.config.resource_routes import resource_router
from shared.deploysource import (
    DeploySource,
    ensure_commit,
    load_deploy_source,
    register_secrets,
)
from shared.errors import ConfigError
from shared.eventlog import EventStore
from shared.events.catalog import DeploymentTriggered
from shared.events.streams import application_stream
from shared.git import GitCache, GitError, GitRepository
from shared.planning import Plan, PlanError, make_plan
from shared.planning.skip import skipped_stages, uses_skip_on
from shared.redaction import redact
from shared.snapshots import StateRead, read_states
from shared.stream_folds import APPLICATION

__all__ = ["AppRead", "PlanSources", "RepositoryRef"]


@dataclass(frozen=True)
class AppRead:
    """An application as read from its stream, and the stream's version it was read at: a
    plan made from it stands only while the stream is still at that version."""

    application: Application | None
    """None when not registered (or deleted)."""
    version: int
    """The application stream's version read (`NO_STREAM`: no stream)."""


def _app_read(read: StateRead[RecordedApplication]) -> AppRead:
    return AppRead(read.state.application if read.state is not None else None, read.version)


@dataclass(frozen=True)
class RepositoryRef:
    """Where a repository of the control config lives."""

    remote: str
    branch: str = ""


class PlanSources:
    """Reads what planning a trigger needs, and makes its plan."""

    def __init__(
        self,
        *,
        store: EventStore,
        git: GitCache,
        repositories: Mapping[str, RepositoryRef],
        control_config_path: str = "",
        platform_providers: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.store = store
        self.git = git
        self.repositories = dict(repositories)
        self.control_config_path = control_config_path
        # name → labels, in the control config's order: a `resourceRoutes` entry no
        # provider answers fails at planning, before anything is applied. None: unchecked.
        self.platform_providers = platform_providers

    async def applications(self, application_ids: Iterable[str]) -> dict[str, AppRead]:
        """Each application as its stream says now, and the stream version that says so, in
        two round trips for all of them (`shared.snapshots.read_states`): an application
        synced often has a long stream, read from its snapshot."""
        ids = list(application_ids)
        read = await read_states(self.store, map(application_stream, ids), APPLICATION)
        return {app_id: _app_read(read[application_stream(app_id)]) for app_id in ids}

    async def plan(
        self, trigger: DeploymentTriggered, running: str, known: AppRead | None = None
    ) -> tuple[Plan, Application, str, str]:
        """(the plan, the application, its repository id, its config file's text) for
        `trigger`, `running` being the application's running commit ("" for its first
        deployment). `known` is the application as a batch read it (`applications`); without
        it, it is read now."""
        if known is None:
            # Read outside the planner's transaction, which reads committed data: the
            # same application it would see.
            known = (await self.applications([trigger.application_id]))[trigger.application_id]
        app = known.application
        if app is None:
            raise PlanError(
                f"application {trigger.application_id} is not registered; register it with "
                "`slipway app add` and sync again"
            )
        if app.disabled:
            raise PlanError(f"application {app.name} is disabled; enable it and sync again")
        repository_id = trigger.repository_id or app.repository_id
        ref = self.repositories.get(repository_id)
        if ref is None:
            where = f" ({self.control_config_path})" if self.control_config_path else ""
            listed = ", ".join(sorted(self.repositories)) or "none"
            raise PlanError(
                f"repository {repository_id!r} of application {app.name} is not in the control "
                f"config{where}; add it under spec.repositories (known: {listed})"
            )
        repo = self.git.repository(ref.remote)
        target = await self._source(
            repo, trigger.commit_hash, app, what="the trigger's commit", references=True
        )
        if self.platform_providers:
            own = app.platform_provider or next(iter(self.platform_providers))
            resource_router(
                target.config, own, self.platform_providers, config_text=target.config_text
            )
        running_manifests = None
        running_error = ""
        if running:
            try:
                source = await self._source(repo, running, app, what="the running commit")
                running_manifests = list(source.manifests)
            except (ConfigError, PlanError) as exc:
                running_error = str(exc)
        plan = make_plan(
            target.spec,
            trigger_info(trigger),
            list(target.manifests),
            running_manifests,
            running_commit=running,
            running_error=running_error,
        )
        if uses_skip_on(target.spec):
            skipped = await self._skips(repo, plan, target, trigger, running)
            plan = Plan(plan.decision, plan.stages, skipped, plan.version)
        return plan, app, repository_id, target.config_text

    async def _skips(
        self,
        repo: GitRepository,
        plan: Plan,
        target: DeploySource,
        trigger: DeploymentTriggered,
        running: str,
    ) -> dict[str, str]:
        """The plan's stages `skipOn` skips: by the target commit's message, and the
        files changed since the running commit (`shared.planning.skip`)."""
        try:
            commit = await repo.commit(trigger.commit_hash)
            changed = await repo.changed_paths(running, commit.hash) if running else None
        except GitError as exc:
            raise PlanError(
                f"skipOn needs the commit message and the files changed since "
                f"{running[:12] or 'the start'}, which git could not give: {exc}"
            ) from exc
        return skipped_stages(
            plan.stages, target.spec, commit_message=commit.message, changed_paths=changed
        )

    async def _source(
        self,
        repo: GitRepository,
        commit: str,
        app: Application,
        *,
        what: str,
        references: bool = False,
    ) -> DeploySource:
        try:
            full = await ensure_commit(repo, commit)
            source = await load_deploy_source(
                repo, full, app.path, app.config_filename, references=references
            )
            register_secrets(source)  # a commit of the watched branch: its Secrets are real
            return source
        except GitError as exc:
            if exc.kind == "not_found":
                raise PlanError(
                    f"{what} {commit[:12]} is not in repository {_remote(repo)}: "
                    "was it force-pushed away? Sync a commit that exists"
                ) from exc
            if exc.kind == "auth":
                raise PlanError(
                    f"git refused access to {_remote(repo)} ({exc.reason}); fix the "
                    "repository's credentials and sync again"
                ) from exc
            raise


def _remote(repo: GitRepository) -> str:
    return redact(repo.remote)
