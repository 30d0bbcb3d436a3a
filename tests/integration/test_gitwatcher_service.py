"""The gitwatcher against real git repositories and PostgreSQL: commits, triggers, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.gitwatcher.service import WatchedRepository
from services.gitwatcher.watcher import append_trigger
from shared.eventlog import EventStore
from shared.events import vocabulary
from shared.events.base import Metadata
from shared.events.catalog import (
    ApplicationConfigDiscovered,
    CommitObserved,
    DeploymentTriggered,
    RepositoryFetchFailed,
    RepositoryRecovered,
)
from shared.events.ids import on_commit_deployment_id
from shared.testing import wait_until
from tests.support import running
from tests.support.git_helpers import WorkRepo, app_config
from tests.support.gitwatcher import (
    SEED_SERVICES,
    disable,
    events_of,
    make_gitwatcher,
    register,
    registration,
    seeded_repo,
    watched,
)


@pytest.fixture
def work(tmp_path: Path) -> WorkRepo:
    return seeded_repo(tmp_path / "config")


@pytest.fixture
async def three_apps(store: EventStore, projector_store: EventStore) -> None:
    await register(store, projector_store, *(registration(s) for s in SEED_SERVICES))


@pytest.mark.usefixtures("three_apps")
async def test_first_observation_records_the_head_and_triggers_nothing(
    store: EventStore, work: WorkRepo, tmp_path: Path
) -> None:
    """A repository seen for the first time has its head recorded; history deploys nothing."""
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    observed = await events_of(store, CommitObserved)
    assert [(o.commit_hash, o.previous_hash, o.source) for o in observed] == [
        (work.head(), "", "poll")
    ]
    assert await events_of(store, DeploymentTriggered) == []
    await gitwatcher.poll_all()
    assert len(await events_of(store, CommitObserved)) == 1


@pytest.mark.usefixtures("three_apps")
async def test_commit_touching_two_of_three_apps_triggers_exactly_two(
    store: EventStore, work: WorkRepo, tmp_path: Path
) -> None:
    """A commit changing two apps' folders gives two triggers with its author, message, hash."""
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    commit = work.commit(
        {
            "account/dev/deployment.yaml": "image: v2\n",
            "billing/dev/deployment.yaml": "image: v2\n",
            "README.md": "docs only\n",
        },
        "Bump account and billing to v2\n\nCI run 42",
        author="Carol CI",
        email="ci@example.com",
    )
    await gitwatcher.poll_all()

    triggers = await events_of(store, DeploymentTriggered)
    assert sorted(t.application_id for t in triggers) == ["account-dev", "billing-dev"]
    for trigger in triggers:
        assert trigger.trigger == "on_commit"
        assert trigger.commit_hash == commit
        assert trigger.commit_author == "Carol CI"
        assert trigger.commit_message == "Bump account and billing to v2\n\nCI run 42"
        assert (trigger.repository_id, trigger.commit_branch) == ("config", "main")
        assert trigger.deployment_id == on_commit_deployment_id(trigger.application_id, commit)
        stream = await store.read_stream(f"deployment-{trigger.deployment_id}")
        assert [r.event for r in stream] == [trigger]
    observed = (await events_of(store, CommitObserved))[-1]
    assert observed.commit_hash == commit
    assert observed.changed_paths == (
        "README.md",
        "account/dev/deployment.yaml",
        "billing/dev/deployment.yaml",
    )


@pytest.mark.usefixtures("three_apps")
async def test_each_new_commit_is_judged_with_its_own_config(
    store: EventStore, work: WorkRepo, tmp_path: Path
) -> None:
    """Several commits in one fetch are judged in order, each with its config at that commit."""
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    matcher = "  commitMatcher:\n    quickSync: '\\[quick\\]'\n"
    watching_shared = (
        "  trigger:\n    onCommit:\n      paths: ['shared/**']\n      ignores: ['**/*.md']\n"
    )
    first = work.commit(
        {"account/dev/.pipe.yaml": app_config("account-dev", extra=matcher)}, "matcher"
    )
    second = work.commit({"account/dev/deployment.yaml": "x"}, "hotfix [quick]")
    third = work.commit(
        {"auth/dev/.pipe.yaml": app_config("auth-dev", extra=watching_shared)}, "watch shared"
    )
    fourth = work.commit({"shared/base.yaml": "b", "auth/dev/NOTES.md": "n"}, "shared change")
    fifth = work.commit({"auth/dev/README.md": "r"}, "docs only")
    await gitwatcher.poll_all()

    observed = await events_of(store, CommitObserved)
    assert [o.commit_hash for o in observed[1:]] == [first, second, third, fourth, fifth]
    assert [o.previous_hash for o in observed[1:]] == [
        observed[0].commit_hash,
        first,
        second,
        third,
        fourth,
    ]
    triggers = {
        (t.application_id, t.commit_hash): t for t in await events_of(store, DeploymentTriggered)
    }
    assert set(triggers) == {
        ("account-dev", first),
        ("account-dev", second),
        ("auth-dev", third),
        ("auth-dev", fourth),
    }
    # A matching commitMatcher forces nothing here: the planner applies it, in PipeCD's order.
    assert triggers["account-dev", first].strategy == "auto"
    assert triggers["account-dev", second].strategy == "auto"
    assert triggers["account-dev", second].commit_message == "hotfix [quick]"


@pytest.mark.usefixtures("three_apps")
async def test_disabled_app_and_on_commit_disabled_are_not_triggered(
    store: EventStore, projector_store: EventStore, work: WorkRepo, tmp_path: Path
) -> None:
    """onCommit.disabled in the config, or a disabled application, means no trigger."""
    await disable(store, projector_store, "billing-dev")
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    off = "  trigger:\n    onCommit:\n      disabled: true\n"
    work.commit({"account/dev/.pipe.yaml": app_config("account-dev", extra=off)}, "no auto")
    work.commit({"billing/dev/deployment.yaml": "x", "auth/dev/deployment.yaml": "y"}, "both")
    await gitwatcher.poll_all()
    assert [t.application_id for t in await events_of(store, DeploymentTriggered)] == ["auth-dev"]


@pytest.mark.usefixtures("three_apps")
async def test_unreachable_remote_is_recorded_backed_off_and_recovers(
    store: EventStore, tmp_path: Path
) -> None:
    """A missing remote: one RepositoryFetchFailed, retries back off, then recovery and commits."""
    path = tmp_path / "late"
    spec = WatchedRepository(
        repository_id="config", remote=path.resolve().as_uri(), poll_interval_s=0.05
    )
    gitwatcher = make_gitwatcher(
        store, tmp_path / "cache", spec, backoff_initial_s=0.02, backoff_max_s=0.1
    )
    watcher = gitwatcher.watchers["config"]
    async with running(watcher.run):
        await wait_until(lambda: watcher.attempts >= 4, what="several failed fetches")
        failures = await events_of(store, RepositoryFetchFailed)
        assert len(failures) == 1
        assert failures[0].reason.startswith("not_found: ")
        assert "does not appear to be a git repository" in failures[0].reason
        assert failures[0].attempt == 1 and failures[0].retry_in_s == pytest.approx(0.02)
        assert watcher.retry_in_s == pytest.approx(0.1)  # capped

        work = seeded_repo(path, "the remote appears")

        async def recovered() -> bool:
            return bool(await events_of(store, RepositoryRecovered)) and bool(
                await events_of(store, CommitObserved)
            )

        await wait_until(recovered, what="recovery and first observation")
        commit = work.commit({"auth/dev/deployment.yaml": "v3"}, "deploy auth")

        async def triggered() -> bool:
            return any(t.commit_hash == commit for t in await events_of(store, DeploymentTriggered))

        await wait_until(triggered, what="a trigger after recovery")
    assert len(await events_of(store, RepositoryFetchFailed)) == 1
    (recovery,) = await events_of(store, RepositoryRecovered)
    assert recovery.after_attempts >= 4


async def test_unregistered_configs_are_discovered_once(
    store: EventStore, projector_store: EventStore, work: WorkRepo, tmp_path: Path
) -> None:
    """Config files no registered app points at are announced once, even by two replicas."""
    await register(store, projector_store, registration("account"))
    one = make_gitwatcher(store, tmp_path / "cache1", watched(work))
    two = make_gitwatcher(store, tmp_path / "cache2", watched(work))
    await one.poll_all()
    await two.poll_all()
    discovered = await events_of(store, ApplicationConfigDiscovered)
    assert sorted((d.path, d.config_filename, d.name) for d in discovered) == [
        ("auth/dev", ".pipe.yaml", "auth-dev"),
        ("billing/dev", ".pipe.yaml", "billing-dev"),
    ]
    assert all(d.labels == (("env", "dev"),) and d.commit_hash == work.head() for d in discovered)

    work.commit({"search/prd/app.pipecd.yaml": app_config("search", "prd")}, "new app")
    await register(store, projector_store, registration("auth"))
    await one.poll_all()
    await two.poll_all()
    discovered = await events_of(store, ApplicationConfigDiscovered)
    assert [d.path for d in discovered[2:]] == ["search/prd"]
    assert discovered[2].config_filename == "app.pipecd.yaml"


@pytest.mark.usefixtures("three_apps")
async def test_history_rewind_judges_the_head_against_the_last_observed(
    store: EventStore, work: WorkRepo, tmp_path: Path
) -> None:
    """A branch reset to an older commit is observed, and apps changed since are triggered."""
    from tests.support.git_helpers import git

    base = work.head()
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    work.commit({"auth/dev/deployment.yaml": "bad"}, "bad change")
    await gitwatcher.poll_all()
    git(work.path, "reset", "--quiet", "--hard", base)
    await gitwatcher.poll_all()
    observed = await events_of(store, CommitObserved)
    assert observed[-1].commit_hash == base
    assert observed[-1].changed_paths == ("auth/dev/deployment.yaml",)
    triggers = await events_of(store, DeploymentTriggered)
    assert [(t.application_id, t.commit_hash) for t in triggers][-1] == ("auth-dev", base)


@pytest.mark.usefixtures("three_apps")
async def test_a_replica_dying_between_trigger_and_checkpoint_repeats_nothing(
    store: EventStore, work: WorkRepo, tmp_path: Path
) -> None:
    """Triggers appended without their CommitObserved (a crash) are not appended twice later."""
    gitwatcher = make_gitwatcher(store, tmp_path / "cache", watched(work))
    await gitwatcher.poll_all()
    commit = work.commit({"auth/dev/deployment.yaml": "v2"}, "bump auth")
    # What a replica that died after step 1 left behind: the trigger, no observation.
    early = DeploymentTriggered(
        deployment_id=on_commit_deployment_id("auth-dev", commit),
        application_id="auth-dev",
        trigger=vocabulary.Trigger("on_commit"),
        commit_hash=commit,
        commit_author="Alice Example",
        commit_message="bump auth",
        repository_id="config",
        commit_branch="main",
    )
    assert await append_trigger(store, early, Metadata())
    await gitwatcher.poll_all()
    assert await events_of(store, DeploymentTriggered) == [early]
    assert [o.commit_hash for o in await events_of(store, CommitObserved)][-1] == commit
