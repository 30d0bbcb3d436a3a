"""A commit touching many applications: its triggers are appended together, not one by one.

At 200 repositories of 50 applications (issue 16) a commit bumping every image
opens 50 deployment streams; appended one after another that is 50
transactions in a row per commit. Appended at once, the store's group commit
takes them in a few.
"""

from __future__ import annotations

from pathlib import Path

from shared.db import create_pool
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.catalog import CommitObserved, DeploymentCompleted, DeploymentTriggered
from shared.events.ids import on_commit_deployment_id
from tests.support.git_helpers import WorkRepo
from tests.support.gitwatcher import (
    events_of,
    make_gitwatcher,
    register,
    registration,
    seed_layout,
    watched,
)
from tests.support.statements import StatementLog

SERVICES = tuple(f"svc{n:02d}" for n in range(20))


async def test_a_commits_triggers_are_appended_together(
    store: EventStore,
    projector_store: EventStore,
    app_database_url: str,
    schema: str,
    tmp_path: Path,
) -> None:
    work = WorkRepo(tmp_path / "config")
    work.commit(seed_layout(SERVICES), "initial layout")
    await register(store, projector_store, *(registration(s) for s in SERVICES))
    statements = StatementLog()
    pool = await create_pool(app_database_url, schema=schema, setup=statements.setup)
    try:
        counted = EventStore(pool, store.registry)
        gitwatcher = make_gitwatcher(counted, tmp_path / "cache", watched(work))
        await gitwatcher.poll_all()
        commit = work.commit(
            {f"{s}/dev/deployment.yaml": "image: v2\n" for s in SERVICES}, "bump every image"
        )
        statements.queries.clear()
        await gitwatcher.poll_all()
    finally:
        await pool.close()

    triggers = await events_of(store, DeploymentTriggered)
    assert sorted(t.application_id for t in triggers) == sorted(f"{s}-dev" for s in SERVICES)
    assert {t.commit_hash for t in triggers} == {commit}
    assert (await events_of(store, CommitObserved))[-1].commit_hash == commit
    appends = [q for q in statements.queries if "INSERT INTO events" in q]
    # One per trigger and one for CommitObserved when appended one by one.
    assert len(appends) < len(SERVICES), f"{len(appends)} appends for {len(SERVICES)} triggers"
    # A new deployment's stream is not read before it is opened (nor, the configs being
    # unchanged, any application's config stream): what is read is the repository's stream.
    reads = [q for q in statements.queries if "stream_version >= $2" in q]
    assert len(reads) < len(SERVICES), f"{len(reads)} stream reads for {len(SERVICES)} triggers"


async def test_a_refused_trigger_does_not_keep_the_others_out(
    store: EventStore, projector_store: EventStore, tmp_path: Path
) -> None:
    """A deployment stream already taken refuses its trigger; the commit's others land."""
    services = SERVICES[:3]
    work = WorkRepo(tmp_path / "config")
    work.commit(seed_layout(services), "initial layout")
    await register(store, projector_store, *(registration(s) for s in services))
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    commit = work.commit(
        {f"{s}/dev/deployment.yaml": "image: v2\n" for s in services}, "bump every image"
    )
    taken = on_commit_deployment_id(f"{services[0]}-dev", commit)
    squatter = DeploymentCompleted(
        deployment_id=taken,
        application_id=f"{services[0]}-dev",
        status=vocabulary.DeploymentStatus("SUCCESS"),
        commit_hash=commit,
    )
    await store.append(f"deployment-{taken}", new_events([squatter]), expected_version=NO_STREAM)
    await gitwatcher.poll_all()
    triggers = await events_of(store, DeploymentTriggered)
    assert sorted(t.application_id for t in triggers) == [f"{s}-dev" for s in services[1:]]
    assert (await events_of(store, CommitObserved))[-1].commit_hash == commit
