"""The planner in one test: a relay, the planner and its consumer over the test's schema and
subjects (`Harness`), and waiting for a deployment's event."""

from __future__ import annotations

from typing import Any

from services.planner.service import CONSUMER_NAME, HANDLES, Planner, RepositoryRef, ordering_key
from shared.consumer import EventConsumer
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentTriggered,
)
from shared.git import GitCache
from shared.testing import wait_until
from tests.support import Backends, Component

APP = "app01account"


async def wait_for_event(
    store: EventStore, deployment_id: str, kind: type[Event], within_s: float = 20.0
) -> Event:
    """The first `kind` event of the deployment's stream, once there is one."""

    async def first() -> Event | None:
        stream = await store.read_stream(f"deployment-{deployment_id}")
        return next((r.event for r in stream if isinstance(r.event, kind)), None)

    return await wait_until(first, within_s, what=f"{kind.__name__} for {deployment_id}")


class Harness:
    """A relay, a planner and its consumer, for one test's schema and subjects."""

    def __init__(
        self, backends: Backends, cache: GitCache, remote: str, **planner_options: Any
    ) -> None:
        store, subjects = backends.store, backends.subjects
        self.store = store
        self.relay = backends.relay()
        self.planner = Planner(
            store=store,
            git=cache,
            repositories={"config": RepositoryRef(remote=remote, branch="main")},
            **planner_options,
        )
        self.consumer = EventConsumer(
            name=CONSUMER_NAME,
            js=backends.nc.jetstream(),
            pool=store.pool,
            registry=store.registry,
            subjects=subjects,
            handler=self.planner.handle,
            handles=HANDLES,
            fetch_timeout_s=0.2,
            ack_wait_s=10.0,
            max_deliver=50,
            backoff_s=(0.1,),
            # As the service wires it: a batch prepared, then one transaction.
            ordering_key=ordering_key,
            prepare=self.planner.prepare,
        )

    def components(self) -> list[Component]:
        return [self.relay.run, self.consumer.run, self.planner.retry_waiting]

    async def register(self, env: str = "prd") -> None:
        await self.store.append(
            f"application-{APP}",
            new_events(
                [
                    ApplicationRegistered(
                        application_id=APP,
                        name=f"account-{env}",
                        repository_id="config",
                        path=f"account/{env}",
                        config_filename=".pipe.yaml",
                    )
                ]
            ),
            expected_version=NO_STREAM,
        )

    async def trigger(self, deployment_id: str, commit: str, message: str = "change") -> None:
        triggered = DeploymentTriggered(
            deployment_id=deployment_id,
            application_id=APP,
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash=commit,
            commit_message=message,
            repository_id="config",
            commit_branch="main",
        )
        await self._append(deployment_id, triggered, expected_version=NO_STREAM)

    async def complete(self, deployment_id: str, commit: str, status: str = "SUCCESS") -> None:
        completed = DeploymentCompleted(
            deployment_id=deployment_id,
            application_id=APP,
            status=vocabulary.DeploymentStatus(status),
            commit_hash=commit,
        )
        await self._append(deployment_id, completed, expected_version=None)

    async def _append(self, deployment_id: str, event: Event, expected_version: int | None) -> None:
        await self.store.append(
            f"deployment-{deployment_id}", new_events([event]), expected_version=expected_version
        )
