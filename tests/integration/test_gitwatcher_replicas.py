"""Two gitwatcher replicas on one repository, and the real service process from a control config."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from services.gitwatcher.webhooks import github_signature
from shared.db import create_pool
from shared.eventlog import EventStore
from shared.events.catalog import CommitObserved, DeploymentTriggered, default_registry
from shared.testing import wait_until
from tests.support import Backends, running
from tests.support.gitwatcher import (
    SECRET,
    SEED_SERVICES,
    events_of,
    github_push,
    has_events,
    make_gitwatcher,
    post,
    register,
    registration,
    seeded_repo,
    watched,
)
from tests.support.processes import service_env, service_processes


async def test_two_replicas_and_a_webhook_observe_and_trigger_each_commit_once(
    store: EventStore,
    projector_store: EventStore,
    app_database_url: str,
    schema: str,
    tmp_path: Path,
) -> None:
    """Two replicas polling one repository, plus webhooks: one observation and one trigger each."""
    work = seeded_repo(tmp_path / "config")
    await register(store, projector_store, *(registration(s) for s in SEED_SERVICES))
    other_pool = await create_pool(app_database_url, schema=schema, min_size=1, max_size=5)
    try:
        other_store = EventStore(other_pool, default_registry())
        spec = watched(work, poll_interval_s=0.03, webhook_secret=SECRET)
        one = make_gitwatcher(store, tmp_path / "cache-one", spec)
        two = make_gitwatcher(other_store, tmp_path / "cache-two", spec)
        server = one.webhook_server()
        touched = [("account",), ("auth", "billing"), ("account", "auth", "billing"), ("billing",)]
        expected: set[tuple[str, str]] = set()
        async with running(one.watchers["config"].run, two.watchers["config"].run, server.run):
            await wait_until(lambda: has_events(store, CommitObserved, 1), what="first observation")
            for number, services in enumerate(touched):
                commit = work.commit(
                    {f"{s}/dev/deployment.yaml": f"v{number}" for s in services}, f"change {number}"
                )
                expected |= {(f"{s}-dev", commit) for s in services}
                body = github_push(work.url, after=commit)
                headers = {
                    "X-GitHub-Event": "push",
                    "X-Hub-Signature-256": github_signature(SECRET, body),
                }
                status, _ = await post(server, "github", body, headers)
                assert status == 202
            await wait_until(
                lambda: has_events(store, CommitObserved, 1 + len(touched)),
                what="every commit observed",
            )
            await wait_until(
                lambda: has_events(store, DeploymentTriggered, len(expected)), what="triggers"
            )
            # Both replicas keep polling a while longer: nothing more may appear.
            polls = one.watchers["config"].polls + two.watchers["config"].polls
            await wait_until(
                lambda: one.watchers["config"].polls + two.watchers["config"].polls >= polls + 6,
                what="more polls by both replicas",
            )
    finally:
        await other_pool.close()

    observed = [o.commit_hash for o in await events_of(store, CommitObserved)]
    assert len(observed) == len(set(observed)) == 1 + len(touched)
    triggers = Counter(
        (t.application_id, t.commit_hash) for t in await events_of(store, DeploymentTriggered)
    )
    assert set(triggers) == expected
    assert set(triggers.values()) == {1}
    assert one.watchers["config"].polls > 1 and two.watchers["config"].polls > 1


async def test_replicas_polling_at_the_same_moment_agree(
    store: EventStore,
    projector_store: EventStore,
    app_database_url: str,
    schema: str,
    tmp_path: Path,
) -> None:
    """Replicas racing through the same new commits record each once and trigger each app once."""
    work = seeded_repo(tmp_path / "config")
    await register(store, projector_store, *(registration(s) for s in SEED_SERVICES))
    pools = [
        await create_pool(app_database_url, schema=schema, min_size=1, max_size=3) for _ in range(2)
    ]
    try:
        replicas = [
            make_gitwatcher(
                EventStore(p, default_registry()), tmp_path / f"cache{i}", watched(work)
            )
            for i, p in enumerate([store.pool, *pools])
        ]
        await asyncio.gather(*(r.poll_all() for r in replicas))
        commits = [
            work.commit({f"{s}/dev/deployment.yaml": f"v{n}" for s in ("account", "auth")}, f"c{n}")
            for n in range(3)
        ]
        await asyncio.gather(*(r.poll_all() for r in replicas))
    finally:
        for p in pools:
            await p.close()
    observed = [o.commit_hash for o in await events_of(store, CommitObserved)]
    assert observed[1:] == commits
    triggers = Counter(
        (t.application_id, t.commit_hash) for t in await events_of(store, DeploymentTriggered)
    )
    assert triggers == Counter({(f"{s}-dev", c): 1 for s in ("account", "auth") for c in commits})


async def test_a_replica_with_a_stale_fetch_does_not_move_the_head_back(
    store: EventStore, projector_store: EventStore, tmp_path: Path
) -> None:
    """A replica whose fetch predates a newer recorded head refetches instead of rewinding."""
    work = seeded_repo(tmp_path / "config")
    await register(store, projector_store, registration("account"))
    slow = make_gitwatcher(store, tmp_path / "slow", watched(work))
    fast = make_gitwatcher(store, tmp_path / "fast", watched(work))
    await slow.poll_all()
    first = work.commit({"account/dev/deployment.yaml": "v1"}, "one")
    slow_git = slow.watchers["config"].git
    real_fetch = slow_git.fetch
    calls = 0

    async def fetch_then_fall_behind() -> None:
        nonlocal calls
        calls += 1
        await real_fetch()
        if calls == 1:  # while the slow replica holds `first`, the other records more
            work.commit({"account/dev/deployment.yaml": "v2"}, "two")
            await fast.poll_all()

    slow_git.fetch = fetch_then_fall_behind  # type: ignore[method-assign,assignment]
    await slow.poll_all()
    observed = [o.commit_hash for o in await events_of(store, CommitObserved)]
    assert observed[1:] == [first, work.head()]
    assert calls == 2  # the refetch
    triggers = Counter(t.commit_hash for t in await events_of(store, DeploymentTriggered))
    assert triggers == Counter({first: 1, work.head(): 1})


CONTROL = """\
apiVersion: slipway.dev/v1
kind: Slipway
spec:
  project: demo
  repositories:
    - repoId: config
      remote: {remote}
      branch: main
      pollInterval: 100ms
      webhookSecretFile: webhook-secret.txt
"""


async def test_service_process_runs_from_a_control_config(
    backends: Backends, tmp_path: Path
) -> None:
    """`python -m services.gitwatcher` reads slipway.yaml, observes the repo, stops on SIGTERM."""
    work = seeded_repo(tmp_path / "config")
    (tmp_path / "webhook-secret.txt").write_text(SECRET + "\n")
    control = tmp_path / "slipway.yaml"
    control.write_text(CONTROL.format(remote=work.url))
    env = service_env(
        backends,
        control,
        SLIPWAY_GIT_CACHE_DIR=str(tmp_path / "cache"),
        SLIPWAY_LOG_FORMAT="json",
        SLIPWAY_SHUTDOWN_GRACE_S="5",
    )
    async with service_processes(env, tmp_path) as services:
        process = services.start("gitwatcher")

        async def observed() -> bool:
            if not process.running:
                raise AssertionError(f"gitwatcher exited: {process.log()}")
            count = await backends.store.pool.fetchval(
                "SELECT count(*) FROM events WHERE event_type = 'commit_observed'"
            )
            return bool(count == 1)

        await wait_until(observed, within_s=30, what="CommitObserved from the process")
        code = await process.stop(within_s=20)
    output = process.log()
    assert code == 0, output
    assert '"repositories_configured"' in output and '"webhook_server_started"' in output
    assert SECRET not in output
