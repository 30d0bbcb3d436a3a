"""The gitwatcher's config labels at scale: a new head whose configs did not change is checked
against every application's `appconfig-<id>` stream in one read, not one read per stream, and
what that read finds out of date is still recorded (whoever wrote the newest record)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shared.eventlog import ANY, EventStore, new_events
from shared.events import RecordedEvent
from shared.events.catalog import ApplicationConfigObserved, DeploymentTriggered
from shared.events.streams import application_config_stream
from shared.git import GitRepository
from tests.support.git_helpers import WorkRepo, app_config
from tests.support.gitwatcher import (
    events_of,
    make_gitwatcher,
    register,
    registration,
    watched,
)

SERVICES = ("account", "auth", "billing", "cart", "search")


class CountingStore(EventStore):
    """The real store, counting the single-stream reads of `appconfig-` streams."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store.pool, store.registry)
        self.config_reads = 0

    async def read_stream(self, stream_id: str, **kw: Any) -> list[RecordedEvent]:
        if stream_id.startswith("appconfig-"):
            self.config_reads += 1
        return await super().read_stream(stream_id, **kw)


def _layout(env_of: dict[str, str]) -> dict[str, str]:
    return {f"{s}/dev/.pipe.yaml": app_config(f"{s}-dev", env_of.get(s, "dev")) for s in SERVICES}


async def _labels(store: EventStore) -> list[tuple[str, Sequence[tuple[str, str]]]]:
    return [(o.application_id, o.labels) for o in await events_of(store, ApplicationConfigObserved)]


async def test_unchanged_configs_at_a_new_head_are_checked_in_one_read(
    store: EventStore, projector_store: EventStore, tmp_path: Path
) -> None:
    await register(store, projector_store, *(registration(s) for s in SERVICES))
    work = WorkRepo(tmp_path / "config")
    work.commit(_layout({}), "layout")
    counting = CountingStore(store)
    gitwatcher = make_gitwatcher(counting, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    assert len(await _labels(store)) == len(SERVICES)

    counting.config_reads = 0
    work.commit({"README.md": "docs\n"}, "docs")
    await gitwatcher.poll_all()
    # Nothing changed: nothing recorded, and no stream was read one by one.
    assert len(await _labels(store)) == len(SERVICES)
    assert counting.config_reads == 0


async def test_a_newer_record_that_differs_from_the_config_is_corrected(
    store: EventStore, projector_store: EventStore, tmp_path: Path
) -> None:
    await register(store, projector_store, *(registration(s) for s in SERVICES))
    work = WorkRepo(tmp_path / "config")
    work.commit(_layout({}), "layout")
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    # Another replica, at another head, recorded different labels for `auth` since.
    first = (await events_of(store, ApplicationConfigObserved))[1]
    assert first.application_id == "auth-dev"
    stale = ApplicationConfigObserved(
        repository_id="config",
        application_id="auth-dev",
        commit_hash=first.commit_hash,
        labels=(("env", "prd"),),
    )
    await store.append(
        application_config_stream("auth-dev"), new_events([stale]), expected_version=ANY
    )

    work.commit({"README.md": "docs\n"}, "docs")
    await gitwatcher.poll_all()
    # The config still says env=dev: recorded again for `auth` alone, over the newer record.
    labels = await _labels(store)
    assert labels[len(SERVICES) :] == [("auth-dev", (("env", "prd"),)), ("auth-dev", first.labels)]
    assert first.labels == (("env", "dev"),)

    # A config that changes is recorded, the others not.
    work.commit(_layout({"cart": "stg"}), "cart to stg")
    await gitwatcher.poll_all()
    assert (await _labels(store))[len(SERVICES) + 2 :] == [("cart-dev", (("env", "stg"),))]


async def test_a_new_heads_config_files_are_read_once_for_triggers_and_labels(
    store: EventStore,
    projector_store: EventStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await register(store, projector_store, *(registration(s) for s in SERVICES))
    work = WorkRepo(tmp_path / "config")
    work.commit(_layout({}), "layout")
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    reads: list[str] = []
    read_files = GitRepository.read_files

    async def counted(self: GitRepository, commit: str, paths: Sequence[str]) -> Any:
        reads.append(commit)
        return await read_files(self, commit, paths)

    monkeypatch.setattr(GitRepository, "read_files", counted)
    head = work.commit({f"{s}/dev/deployment.yaml": "image: v2\n" for s in SERVICES}, "bump")
    await gitwatcher.poll_all()
    assert len(await events_of(store, DeploymentTriggered)) == len(SERVICES)
    assert reads == [head]
