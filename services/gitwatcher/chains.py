"""The gitwatcher's side of deployment chains: start them, follow them, open their deployments.

A consumer of `DeploymentCompleted` and `DeploymentPlanFailed` (durable
`gitwatcher-chains`), inside the consumer's transaction:

- a deployment the chain opened: its outcome goes to the chain (`RecordOutcome`);
- a SUCCESS of a deployment no chain opened, whose config at its commit has
  `postSync.chain`: the chain starts (`StartChain`), each matcher's applications
  found among the registered ones with `trigger.onChain.disabled: false` at
  their repository's head;
- then, whatever happened, every deployment of the chain's started blocks is
  opened (once: the trigger's id is derived), so a crash between recording a
  block and opening its deployments is repaired by the redelivery.

The decisions are `shared.chains` (pure); the deployments are `on_chain`
triggers at the head of each application's branch, as PipeCD's CHAIN_SYNC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import asyncpg
from nats.js import JetStreamContext

from services.gitwatcher.decider import AppConfigFacts, RegisteredApp
from services.gitwatcher.triggering import append_trigger, event_metadata
from services.gitwatcher.watcher import Metrics, RepositoryWatcher
from shared.chains import CHAIN, ChainState, RecordOutcome, StartChain, matches
from shared.consumer import EventConsumer
from shared.eventlog import EventStore
from shared.eventlog.execute import execute
from shared.events.base import RecordedEvent
from shared.events.catalog import DeploymentCompleted, DeploymentPlanFailed, DeploymentTriggered
from shared.events.ids import chain_id_of
from shared.events.streams import chain_stream, deployment_stream
from shared.events.vocabulary import DeploymentStatus, Strategy, Trigger
from shared.logs import get_logger
from shared.redaction import COMMIT_MESSAGE_CHARS, clip
from shared.subjects import Subjects

__all__ = ["CONSUMER", "ChainRunner"]

log = get_logger("slipway.gitwatcher")

CONSUMER: Final = "gitwatcher-chains"

_APPS: Final = """
SELECT application_id, name, repository_id, path, config_filename, disabled, labels
FROM applications ORDER BY name
"""


class ChainRunner:
    """Starts and follows chains for the repositories this gitwatcher watches."""

    def __init__(
        self, store: EventStore, watchers: Mapping[str, RepositoryWatcher], metrics: Metrics
    ) -> None:
        self.store = store
        self.watchers = watchers
        self.metrics = metrics

    def consumer(
        self, *, js: JetStreamContext, subjects: Subjects, name: str = CONSUMER, **kw: Any
    ) -> EventConsumer:
        """The durable consumer of `DeploymentCompleted` that drives chains."""
        return EventConsumer(
            name=name,
            js=js,
            pool=self.store.pool,
            registry=self.store.registry,
            subjects=subjects,
            handler=self.handle_completed,
            handles=(DeploymentCompleted, DeploymentPlanFailed),
            # The handler may read configs from git: one event per transaction keeps it short.
            events_per_transaction=1,
            **kw,
        )

    async def handle_completed(self, event: RecordedEvent, conn: asyncpg.Connection) -> None:
        """Record a chained deployment's outcome, or start the chain of a successful one.

        A plan that fails ends its deployment FAILURE without a `DeploymentCompleted`."""
        completed = event.event
        if isinstance(completed, DeploymentPlanFailed):
            completed = DeploymentCompleted(
                deployment_id=completed.deployment_id,
                application_id=completed.application_id,
                status=DeploymentStatus.FAILURE,
                reason=completed.reason,
            )
        if not isinstance(completed, DeploymentCompleted):
            return
        first = await self.store.read_stream(
            deployment_stream(completed.deployment_id), limit=1, conn=conn
        )
        trigger = first[0].event if first else None
        if not isinstance(trigger, DeploymentTriggered):
            return
        metadata = event_metadata(
            causation_id=str(event.event_id),
            correlation_id=event.metadata.correlation_id or completed.deployment_id,
        )
        if trigger.chain_id:
            outcome = RecordOutcome(completed.deployment_id, str(completed.status))
            done = await execute(
                self.store, chain_stream(trigger.chain_id), CHAIN, outcome, metadata, conn=conn
            )
            await self._open_deployments(done.after.state, metadata, conn)
            return
        if completed.status != "SUCCESS":
            return
        start = await self._start_command(trigger, conn)
        if start is None:
            return
        done = await execute(
            self.store, chain_stream(start.chain_id), CHAIN, start, metadata, conn=conn
        )
        if done.events:
            log.info(
                "chain_started",
                chain_id=start.chain_id,
                origin_deployment_id=start.origin_deployment_id,
                blocks=[list(b) for b in start.matched],
            )
        await self._open_deployments(done.after.state, metadata, conn)

    async def _start_command(
        self, trigger: DeploymentTriggered, conn: asyncpg.Connection
    ) -> StartChain | None:
        """The chain `trigger`'s deployment starts, from its config at its commit; None if none."""
        rows = await conn.fetch(_APPS)
        origin = next((r for r in rows if r["application_id"] == trigger.application_id), None)
        if origin is None:
            return None
        watcher = self.watchers.get(origin["repository_id"])
        if watcher is None:
            return None
        # Fetched now: the clone may not hold the commit yet (or not exist, before a first poll).
        heads = {watcher.spec.repository_id: await watcher.head_for_sync()}
        facts = await _config_at(watcher, _registered(origin), trigger.commit_hash)
        if facts is None or not facts.chain:
            return None
        candidates = await self._chainable(rows, heads)
        matched = [
            [
                app_id
                for app_id, (name, kind, labels) in candidates.items()
                if app_id != trigger.application_id
                and matches(
                    name=m.name,
                    kind=m.kind,
                    labels=dict(m.labels),
                    app_name=name,
                    app_kind=kind,
                    app_labels=labels,
                )
            ]
            for m in facts.chain
        ]
        return StartChain(
            chain_id=chain_id_of(trigger.deployment_id),
            origin_deployment_id=trigger.deployment_id,
            origin_application_id=trigger.application_id,
            matched=matched,
        )

    async def _chainable(
        self, rows: Sequence[asyncpg.Record], heads: dict[str, str]
    ) -> dict[str, tuple[str, str, dict[str, str]]]:
        """Enabled applications whose config at their branch head lets chains deploy them:
        id → (name, kind, labels)."""
        found: dict[str, tuple[str, str, dict[str, str]]] = {}
        by_repository: dict[str, list[asyncpg.Record]] = {}
        for row in rows:
            if not row["disabled"]:
                by_repository.setdefault(row["repository_id"], []).append(row)
        for repository_id, apps in by_repository.items():
            watcher = self.watchers.get(repository_id)
            if watcher is None:
                continue
            if repository_id not in heads:
                heads[repository_id] = await watcher.head_for_sync()
            head = heads[repository_id]
            for row in apps:
                facts = await _config_at(watcher, _registered(row), head)
                if facts is not None and facts.on_chain:
                    labels = _labels(row["labels"])
                    found[row["application_id"]] = (row["name"], facts.kind, labels)
        return found

    async def _open_deployments(
        self, state: ChainState, metadata: Any, conn: asyncpg.Connection
    ) -> None:
        """Open every deployment of the started blocks (appends nothing for those open)."""
        if state.status != "RUNNING":
            return
        nodes = state.triggered_nodes()
        if not nodes:
            return
        repositories = dict(
            await conn.fetch(
                "SELECT application_id, repository_id FROM applications "
                "WHERE application_id = ANY($1::text[])",
                [node.application_id for _, node in nodes],
            )
        )
        heads: dict[str, str] = {}
        for _index, node in nodes:
            watcher = self.watchers.get(repositories.get(node.application_id, ""))
            if watcher is None:
                log.error(
                    "chain_deployment_not_opened",
                    chain_id=state.chain_id,
                    application_id=node.application_id,
                    reason="its repository is not watched here",
                )
                continue
            repository_id = watcher.spec.repository_id
            if repository_id not in heads:
                heads[repository_id] = await watcher.head_for_sync()
            commit = await watcher.git.commit(heads[repository_id])
            trigger = DeploymentTriggered(
                deployment_id=node.deployment_id,
                application_id=node.application_id,
                trigger=Trigger.ON_CHAIN,
                commit_hash=commit.hash,
                commit_author=commit.author,
                commit_message=clip(commit.message, COMMIT_MESSAGE_CHARS),
                strategy=Strategy.AUTO,
                repository_id=repository_id,
                commit_branch=watcher.spec.branch,
                committed_at=commit.committed_at,
                chain_id=state.chain_id,
            )
            if await append_trigger(self.store, trigger, metadata, conn=conn):
                self.metrics.triggers.labels("on_chain").inc()


def _registered(row: asyncpg.Record) -> RegisteredApp:
    return RegisteredApp(
        application_id=row["application_id"],
        name=row["name"],
        path=row["path"],
        config_filename=row["config_filename"],
    )


async def _config_at(
    watcher: RepositoryWatcher, app: RegisteredApp, commit: str
) -> AppConfigFacts | None:
    """The application's config facts at `commit`; None if absent or broken (logged)."""
    contents = await watcher.git.read_files(commit, [app.config_path])
    content = contents.get(app.config_path)
    return watcher.configs.parse(app.config_path, content) if content is not None else None


def _labels(raw: object) -> dict[str, str]:
    value = json.loads(raw) if isinstance(raw, str) else raw
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
