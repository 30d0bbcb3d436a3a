"""The `discovered_configs` projection over PostgreSQL: which discovered configs are
unregistered as registrations and deletions come and go, and a replay's equal table."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.eventlog import ANY, EventStore, new_events
from shared.events import Event
from shared.events.catalog import (
    ApplicationConfigDiscovered,
    ApplicationConfigRemoved,
    ApplicationDeleted,
    ApplicationRegistered,
)
from shared.projections import ProjectionRunner, replay
from shared.projections.discovered import DiscoveredConfigsProjection, config_id, repository_dir

_APP = "app.pipecd.yaml"
_UNREGISTERED = """
SELECT path, config_filename, name, labels FROM discovered_configs
WHERE registered_by IS NULL AND discovered_position IS NOT NULL ORDER BY discovered_position
"""


def found(path: str, filename: str = "app.pipecd.yaml", **more: Any) -> ApplicationConfigDiscovered:
    fields: dict[str, Any] = {"name": path.replace("/", "-"), "commit_hash": "c0ffee"} | more
    return ApplicationConfigDiscovered(
        repository_id="config", path=path, config_filename=filename, **fields
    )


def registration(app: str, path: str, filename: str = "app.pipecd.yaml") -> ApplicationRegistered:
    return ApplicationRegistered(
        application_id=app, name=app, repository_id="config", path=path, config_filename=filename
    )


async def append(store: EventStore, stream: str, *events: Event) -> None:
    await store.append(stream, new_events(list(events)), expected_version=ANY)


async def unregistered(pool: asyncpg.Pool) -> list[tuple[str, str, str, str]]:
    return [tuple(row) for row in await pool.fetch(_UNREGISTERED)]


async def test_unregistered_configs_follow_registrations_and_deletions_and_replay_alike(
    store: EventStore, projector_store: EventStore
) -> None:
    runner = ProjectionRunner(projector_store, DiscoveredConfigsProjection())
    await runner.install()
    repo = "repository-config"
    # Registered before the gitwatcher announced it (it reads a lagging view): stays off.
    await append(store, "application-early", registration("early", "search/prd"))
    await append(
        store,
        repo,
        found("auth/dev", ".pipe.yaml", labels=(("env", "dev"), ("Bad Key!", "x"))),
        found("billing/dev", name="<script>alert(1)</script>"),
        found("huge", name="n" * 100_000),
        found("search/prd"),
        # What no repository directory or config file is: never listed.
        found("../outside"),
        found("/etc"),
        found("x", "sub/app.pipecd.yaml"),
        found("x", "notes.yaml"),
    )
    await runner.run_until_caught_up()
    listed = await unregistered(store.pool)
    assert listed[:2] == [
        ("auth/dev", ".pipe.yaml", "auth-dev", '{"env": "dev"}'),
        ("billing/dev", "app.pipecd.yaml", "<script>alert(1)</script>", "{}"),
    ]
    assert listed[2][0] == "huge" and len(listed[2][2]) < 300  # clipped
    await append(
        store,
        repo,
        ApplicationConfigRemoved(repository_id="config", path="huge", config_filename=_APP),
    )

    await append(store, "application-a", registration("a", "auth/dev/", ".pipe.yaml"))
    await runner.run_until_caught_up()
    assert [row[0] for row in await unregistered(store.pool)] == ["billing/dev"]

    # A deletion is on the application's, the name's and the claim's streams: one release.
    deleted = ApplicationDeleted(application_id="a")
    for stream in ("application-a", "appname-a", "configclaim-a"):
        await append(store, stream, deleted)
    # `early` moves to a directory nobody discovered: search/prd is free again.
    await append(store, "application-early", registration("early", "search/prd2"))
    await runner.run_until_caught_up()
    assert [row[0] for row in await unregistered(store.pool)] == [
        "auth/dev",
        "billing/dev",
        "search/prd",
    ]
    # The root ("." when registering, "" when discovered) is one directory.
    await append(store, repo, found(""))
    await append(store, "application-root", registration("root", "."))
    await runner.run_until_caught_up()
    assert "" not in [row[0] for row in await unregistered(store.pool)]

    # Files leaving the repository: an unregistered one leaves the list; a registered
    # one does not come back when its application is deleted.
    await append(
        store,
        repo,
        ApplicationConfigRemoved(repository_id="config", path="billing/dev", config_filename=_APP),
        ApplicationConfigRemoved(repository_id="config", path=".", config_filename=_APP),
    )
    await append(store, "application-root", ApplicationDeleted(application_id="root"))
    await runner.run_until_caught_up()
    assert [row[0] for row in await unregistered(store.pool)] == ["auth/dev", "search/prd"]

    live = await rows(store.pool)
    await replay(projector_store, DiscoveredConfigsProjection())
    assert await rows(store.pool) == live
    assert len(live) == 3  # auth/dev, search/prd and early's search/prd2


async def rows(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await pool.fetch("SELECT * FROM discovered_configs ORDER BY 1")]


def test_a_directory_outside_the_repository_is_none_and_ids_are_per_file() -> None:
    assert [repository_dir(p) for p in (".", "", "a/b/", "a/./b", "a/../b")] == [
        "",
        "",
        "a/b",
        "a/b",
        "b",
    ]
    assert [repository_dir(p) for p in ("..", "a/../..", "/abs", "a\nb", "a\0")] == [None] * 5
    assert config_id("r", "a", "app.pipecd.yaml") != config_id("r", "a", ".pipe.yaml")
    assert len(config_id("r", "", ".pipe.yaml")) == 32
