"""The gitwatcher's pure core: on-commit triggers, stream state, discovery."""

from __future__ import annotations

import re

import pytest

from services.gitwatcher.configs import read_app_config
from services.gitwatcher.decider import (
    RegisteredApp,
    RepositoryState,
    TriggerConfig,
    backoff_s,
    decide_commit_observed,
    decide_discovered,
    decide_fetch_failed,
    decide_fetch_succeeded,
    evolve,
    fold,
    on_commit_triggers,
    undiscovered_configs,
)
from services.gitwatcher.handlers import on_command_trigger
from shared.events import vocabulary
from shared.events.catalog import (
    ApplicationConfigDiscovered,
    CommitObserved,
    RepositoryFetchFailed,
    RepositoryRecovered,
    SyncRequested,
)
from shared.events.ids import on_command_deployment_id, on_commit_deployment_id
from shared.streams import check_stream_id

NONE = TriggerConfig()


def _observed(changed: tuple[str, ...], message: str = "bump") -> CommitObserved:
    return CommitObserved(
        repository_id="config",
        branch="main",
        commit_hash="c" * 40,
        previous_hash="b" * 40,
        author="Alice",
        message=message,
        committed_at="2026-03-02T09:00:00+01:00",
        changed_paths=changed,
    )


def test_commit_touching_two_of_three_apps_triggers_two() -> None:
    """A commit touching two of three apps gives two triggers, carrying the commit's facts."""
    apps = [
        RegisteredApp(
            application_id=f"app-{n}",
            name=n,
            path=f"{n}/dev",
            config_filename=".pipe.yaml",
            trigger=NONE,
        )
        for n in ("account", "auth", "billing")
    ]
    triggers = on_commit_triggers(
        _observed(("account/dev/deploy.yaml", "billing/dev/deploy.yaml", "README.md")), apps
    )
    assert [t.application_id for t in triggers] == ["app-account", "app-billing"]
    first = triggers[0]
    assert first.trigger == "on_commit"
    assert first.commit_hash == "c" * 40
    assert (first.commit_author, first.commit_message) == ("Alice", "bump")
    assert (first.repository_id, first.commit_branch, first.strategy) == ("config", "main", "auto")
    assert first.committed_at == "2026-03-02T09:00:00+01:00"  # lead times start there
    assert first.deployment_id == on_commit_deployment_id("app-account", "c" * 40)
    check_stream_id(f"deployment-{first.deployment_id}")


@pytest.mark.parametrize("message", ["fix: [quick] typo", "release v2", "plain bump"])
def test_on_commit_triggers_are_auto_even_when_a_commit_matcher_matches(message: str) -> None:
    """On-commit triggers carry "auto" and the message; the planner applies commitMatcher."""
    facts = read_app_config(
        "svc/app.pipecd.yaml",
        b"apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  commitMatcher:\n"
        b"    quickSync: '\\[quick\\]'\n    pipeline: '^release'\n",
    )
    app = RegisteredApp(
        application_id="svc",
        name="svc",
        path="svc",
        config_filename="app.pipecd.yaml",
        trigger=facts.trigger,
    )
    [trigger] = on_commit_triggers(_observed(("svc/deploy.yaml",), message), [app])
    assert (trigger.strategy, trigger.commit_message) == ("auto", message)


def test_disabled_or_configless_apps_are_never_triggered() -> None:
    """A disabled application, or one whose config is gone at the commit, is not triggered."""
    apps = [
        RegisteredApp(
            application_id="off", name="off", path="a", config_filename="x", disabled=True
        ),
        RegisteredApp(application_id="gone", name="gone", path="a", config_filename="x"),
    ]
    assert on_commit_triggers(_observed(("a/x",)), apps) == []


def test_deployment_ids_are_deterministic_and_distinct() -> None:
    """Deployment ids depend only on (app, commit) or (app, request): every replica agrees."""
    assert on_commit_deployment_id("a", "c1") == on_commit_deployment_id("a", "c1")
    assert on_commit_deployment_id("a", "c1") != on_commit_deployment_id("a", "c2")
    assert on_commit_deployment_id("a", "c1") != on_commit_deployment_id("b", "c1")
    assert on_command_deployment_id("a", "r1") != on_commit_deployment_id("a", "r1")
    assert re.fullmatch("[0-9a-f]{32}", on_commit_deployment_id("a", "c1"))


def test_sync_request_becomes_an_on_command_trigger() -> None:
    """A SyncRequested becomes an on_command trigger at the given head, with its strategy."""
    request = SyncRequested(
        application_id="app",
        request_id="r1",
        strategy=vocabulary.Strategy("pipeline"),
        commander="ci",
    )
    trigger = on_command_trigger(
        request,
        repository_id="config",
        branch="main",
        commit_hash="h",
        commit_author="Bob",
        commit_message="m",
        committed_at="2026-03-02T08:00:00Z",
    )
    assert trigger.committed_at == "2026-03-02T08:00:00Z"
    assert (trigger.trigger, trigger.strategy, trigger.commander) == (
        "on_command",
        "pipeline",
        "ci",
    )
    assert trigger.deployment_id == on_command_deployment_id("app", "r1")
    odd = SyncRequested(
        application_id="app",
        request_id="r2",
        strategy="whatever",  # type: ignore[arg-type]  # deliberately no Strategy
    )
    assert (
        on_command_trigger(
            odd, repository_id="c", branch="b", commit_hash="h", commit_author="", commit_message=""
        ).strategy
        == "auto"
    )


def test_failures_are_recorded_once_per_state_change() -> None:
    """A failure is recorded when it starts or changes kind; recovery once, when it ends."""
    state = RepositoryState()
    failed = decide_fetch_failed(
        state, repository_id="r", kind="unreachable", reason="unreachable: x", attempt=1,
        retry_in_s=1.0,
    )  # fmt: skip
    assert len(failed) == 1
    state = fold(state, failed, [0])
    assert state.failing and state.failure_kind == "unreachable"
    again = decide_fetch_failed(
        state, repository_id="r", kind="unreachable", reason="unreachable: y", attempt=2,
        retry_in_s=2.0,
    )  # fmt: skip
    assert again == []
    other = decide_fetch_failed(
        state, repository_id="r", kind="auth", reason="could not read Username", attempt=3,
        retry_in_s=4.0,
    )  # fmt: skip
    assert isinstance(other[0], RepositoryFetchFailed)
    assert other[0].reason == "auth: could not read Username"
    state = fold(state, other, [1])
    recovered = decide_fetch_succeeded(state, repository_id="r", attempts=3)
    assert recovered == [RepositoryRecovered(repository_id="r", after_attempts=3)]
    state = fold(state, recovered, [2])
    assert not state.failing and state.version == 2
    assert decide_fetch_succeeded(state, repository_id="r", attempts=0) == []


def test_backoff_doubles_and_is_capped() -> None:
    """Back-off doubles from the initial delay and never exceeds the cap."""
    delays = [backoff_s(n, initial_s=1.0, max_s=10.0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff_s(10_000, initial_s=1.0, max_s=10.0) == 10.0


def test_commit_observed_only_follows_the_current_head() -> None:
    """An observation is appended only on top of the head it follows."""
    state = evolve(RepositoryState(), _observed(()), 0)
    assert state.head == "c" * 40
    follow = CommitObserved(
        repository_id="config", branch="main", commit_hash="d" * 40, previous_hash="c" * 40
    )
    stale = CommitObserved(
        repository_id="config", branch="main", commit_hash="d" * 40, previous_hash="b" * 40
    )
    assert decide_commit_observed(state, follow) == [follow]
    assert decide_commit_observed(state, stale) == []


def test_undiscovered_configs_skip_registered_and_announced_ones() -> None:
    """Configs in the tree not registered and not yet announced are discovered, once each."""
    tree = [
        "account/dev/.pipe.yaml",
        "account/prd/.pipe.yaml",
        "auth/dev/app.pipecd.yaml",
        ".pipe/analysis-template.yaml",
        ".pipe/shared.pipecd.yaml",
        "root.pipecd.yaml",
        "account/dev/deployment.yaml",
    ]
    state = RepositoryState(discovered=frozenset({"auth/dev/app.pipecd.yaml"}))
    found = undiscovered_configs(tree, [("account/dev/", ".pipe.yaml")], state)
    assert found == [("account/prd", ".pipe.yaml"), ("", "root.pipecd.yaml")]

    candidate = ApplicationConfigDiscovered(
        repository_id="r", path="account/prd", config_filename=".pipe.yaml", name="account"
    )
    assert decide_discovered(state, [candidate]) == [candidate]
    state = evolve(state, candidate, 3)
    assert decide_discovered(state, [candidate]) == []
    assert undiscovered_configs(tree, [("account/dev", ".pipe.yaml")], state) == [
        ("", "root.pipecd.yaml")
    ]
