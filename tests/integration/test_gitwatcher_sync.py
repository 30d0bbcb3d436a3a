"""`SyncRequested` → an on-command `DeploymentTriggered` at the branch head, over relay + NATS."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client as NatsClient

from services.relay.relay import Relay
from shared.eventlog import ANY, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Metadata
from shared.events.catalog import DeploymentTriggered, SyncRequested
from shared.events.ids import on_command_deployment_id
from shared.messaging import ensure_event_stream
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support import running
from tests.support.gitwatcher import (
    disable,
    events_of,
    make_gitwatcher,
    register,
    registration,
    seeded_repo,
    watched,
)


async def test_sync_request_triggers_the_fetched_branch_head(
    store: EventStore,
    projector_store: EventStore,
    nc: NatsClient,
    subjects: Subjects,
    app_database_url: str,
    schema: str,
    tmp_path: Path,
) -> None:
    """A sync request deploys the head fetched now, with its strategy and commander, once."""
    work = seeded_repo(tmp_path / "config")
    await register(store, projector_store, registration("account"), registration("auth"))
    await disable(store, projector_store, "auth-dev")
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    # Not polled yet: the sync must fetch it itself.
    head = work.commit({"README.md": "unrelated to account"}, "docs", author="Dana")

    js = nc.jetstream()
    await ensure_event_stream(js, subjects)
    relay = Relay(database_url=app_database_url, schema=schema, js=js, subjects=subjects)
    consumer = gitwatcher.sync_consumer(js=js, subjects=subjects, fetch_timeout_s=0.2)
    requests = [
        SyncRequested(
            application_id="account-dev",
            request_id="r1",
            strategy=vocabulary.Strategy("pipeline"),
            commander="ci-bot",
        ),
        SyncRequested(application_id="auth-dev", request_id="r2"),  # disabled: ignored
    ]
    for request in requests:
        await store.append(
            f"application-{request.application_id}",
            new_events([request], metadata=Metadata(correlation_id=f"req-{request.request_id}")),
            expected_version=ANY,
        )
    async with running(relay.run, consumer.run):
        await wait_until(lambda: consumer.stats.handled == 2, what="both sync requests handled")

    (trigger,) = await events_of(store, DeploymentTriggered)
    assert trigger.trigger == "on_command"
    assert (trigger.application_id, trigger.commit_hash) == ("account-dev", head)
    assert (trigger.commit_author, trigger.commit_message) == ("Dana", "docs")
    assert (trigger.strategy, trigger.commander) == ("pipeline", "ci-bot")
    assert trigger.deployment_id == on_command_deployment_id("account-dev", "r1")
    (stored,) = await store.read_stream(f"deployment-{trigger.deployment_id}")
    assert stored.metadata.correlation_id == "req-r1"
    assert consumer.stats.dead_lettered == 0
