"""A discovered config file deleted from the repository: the gitwatcher records it once
(`ApplicationConfigRemoved`), it leaves the unregistered list, and comes back if the file
does. Real git, PostgreSQL and the `discovered_configs` projection."""

from __future__ import annotations

from pathlib import Path

from shared.eventlog import EventStore
from shared.events.catalog import ApplicationConfigDiscovered, ApplicationConfigRemoved
from shared.projections import ProjectionRunner
from shared.projections.discovered import DiscoveredConfigsProjection
from tests.support.git_helpers import WorkRepo, app_config
from tests.support.gitwatcher import (
    events_of,
    make_gitwatcher,
    register,
    registration,
    seeded_repo,
    watched,
)

_UNREGISTERED = """
SELECT path FROM discovered_configs
WHERE registered_by IS NULL AND discovered_position IS NOT NULL ORDER BY path
"""


async def test_a_deleted_config_leaves_the_list_once_and_comes_back_with_its_file(
    store: EventStore, projector_store: EventStore, tmp_path: Path
) -> None:
    work: WorkRepo = seeded_repo(tmp_path / "config")
    await register(store, projector_store, registration("account"))
    listing = ProjectionRunner(projector_store, DiscoveredConfigsProjection())
    await listing.install()
    one = make_gitwatcher(store, tmp_path / "cache1", watched(work))
    two = make_gitwatcher(store, tmp_path / "cache2", watched(work))

    async def unregistered() -> list[str]:
        await listing.run_until_caught_up()
        return [row["path"] for row in await store.pool.fetch(_UNREGISTERED)]

    await one.poll_all()
    assert await unregistered() == ["auth/dev", "billing/dev"]

    work.commit({"billing/dev/.pipe.yaml": None}, "billing goes")
    await one.poll_all()
    await two.poll_all()
    (removed,) = await events_of(store, ApplicationConfigRemoved)
    assert (removed.path, removed.config_filename, removed.commit_hash) == (
        "billing/dev",
        ".pipe.yaml",
        work.head(),
    )
    assert await unregistered() == ["auth/dev"]

    work.commit({"billing/dev/.pipe.yaml": app_config("billing-dev")}, "billing is back")
    await two.poll_all()
    await one.poll_all()
    discovered = await events_of(store, ApplicationConfigDiscovered)
    assert [d.path for d in discovered] == ["auth/dev", "billing/dev", "billing/dev"]
    assert len(await events_of(store, ApplicationConfigRemoved)) == 1
    assert await unregistered() == ["auth/dev", "billing/dev"]
