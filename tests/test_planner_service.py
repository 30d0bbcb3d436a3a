"""The planner service end to end: relay and planner consumer over the test NATS and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.planner.decider import (
    AppQueue,
    Ignore,
    PlanNow,
    QueueBehind,
    gave_up,
    next_to_plan,
    on_triggered,
)
from services.planner.service import CONSUMER_NAME, HANDLES, Planner, RepositoryRef
from shared.applications import application_of
from shared.consumer import EventConsumer
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentQueued,
    DeploymentTriggered,
)
from shared.git import GitCache
from tests.git_helpers import WorkRepo
from tests.seed_repo import PRD_CONFIG, image_bump, seed_files, service_files
from tests.support import Backends, Component, running, wait_until

APP = "app01account"
UNREACHABLE = "http://127.0.0.1:9/config.git"


# The pure core ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "deployment", "expected"),
    [
        (AppQueue("a", None, ("d1",)), "d1", PlanNow("d1")),
        (AppQueue("a", "d1", ("d2",)), "d2", QueueBehind("d2", "d1")),
        (AppQueue("a", "d1", ("d2", "d3")), "d3", QueueBehind("d3", "d2")),
        (AppQueue("a", None, ("d1", "d2")), "d2", QueueBehind("d2", "d1")),
        (AppQueue("a", "d1", ()), "d1", Ignore("already planned, failed or completed")),
    ],
)
def test_on_triggered(queue: AppQueue, deployment: str, expected: object) -> None:
    """Only the oldest waiting deployment with nothing active is planned; others queue behind."""
    assert on_triggered(queue, deployment) == expected


def test_next_to_plan_and_giving_up() -> None:
    """The next is the oldest waiting one when none is active; retries end at the deadline."""
    assert next_to_plan(AppQueue("a", None, ("d2", "d3"))) == "d2"
    assert next_to_plan(AppQueue("a", "d1", ("d2",))) is None
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert not gave_up(None, now, 60)
    assert not gave_up(now - timedelta(seconds=59), now, 60)
    assert gave_up(now - timedelta(seconds=60), now, 60)


def test_application_folds_registrations_and_disabling() -> None:
    """The latest registration describes the app; disabling and enabling toggle it."""
    registered = ApplicationRegistered(
        application_id="a", name="web", repository_id="r", path="web/prd"
    )
    moved = ApplicationRegistered(application_id="a", name="web", repository_id="r", path="web/x")
    assert application_of([]) is None
    app = application_of([registered, ApplicationDisabled(application_id="a"), moved])
    assert app is not None and (app.path, app.disabled) == ("web/x", True)
    app = application_of([registered, ApplicationDisabled(application_id="a"),
                          ApplicationEnabled(application_id="a")])  # fmt: skip
    assert app is not None and not app.disabled


# The service -------------------------------------------------------------------------


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
        self, backends: Backends, cache: GitCache, remote: str, **planner_options: float
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
            trigger="on_commit",
            commit_hash=commit,
            commit_message=message,
            repository_id="config",
            commit_branch="main",
        )
        await self._append(deployment_id, triggered, expected_version=NO_STREAM)

    async def complete(self, deployment_id: str, commit: str, status: str = "SUCCESS") -> None:
        completed = DeploymentCompleted(
            deployment_id=deployment_id, application_id=APP, status=status, commit_hash=commit
        )
        await self._append(deployment_id, completed, expected_version=None)

    async def _append(self, deployment_id: str, event: Event, expected_version: int | None) -> None:
        await self.store.append(
            f"deployment-{deployment_id}", new_events([event]), expected_version=expected_version
        )


@pytest.fixture
async def harness(backends: Backends, tmp_path: Path, work: WorkRepo) -> Harness:
    await backends.ensure_event_stream()
    return Harness(backends, GitCache(tmp_path / "cache"), work.url)


async def test_trigger_is_planned_with_stages(harness: Harness, work: WorkRepo) -> None:
    """ApplicationRegistered + DeploymentTriggered → DeploymentPlanned with its stages."""
    commit = work.commit(seed_files("account"), "initial")
    async with running(*harness.components()):
        await harness.register("prd")
        await harness.trigger("d1", commit)
        plan = await wait_for_event(harness.store, "d1", DeploymentPlanned)
    assert isinstance(plan, DeploymentPlanned)
    assert (plan.strategy, plan.commit_hash, plan.running_commit_hash) == ("quick_sync", commit, "")
    assert plan.reason.endswith("because it seems this is the first deployment")
    assert plan.summary == "+2 resources"
    assert [(s.id, s.name, s.visible) for s in plan.stages] == [
        ("K8sSync", "K8S_SYNC", True),
        ("Rollback", "ROLLBACK", False),
    ]
    assert (plan.path, plan.config_filename, plan.repository_id) == (
        "account/prd",
        ".pipe.yaml",
        "config",
    )
    assert harness.planner.outcomes == {"quick_sync": 1}


async def test_fifo_queue_and_running_commit(harness: Harness, work: WorkRepo) -> None:
    """Triggers behind an active deployment queue in order; each completion plans the next."""
    first = work.commit(seed_files("account"), "initial")
    second = work.commit(image_bump("account", "prd", "v2"), "account v2")
    third = work.commit(image_bump("account", "prd", "v3"), "account v3")
    async with running(*harness.components()):
        await harness.register("prd")
        await harness.trigger("d1", first)
        await wait_for_event(harness.store, "d1", DeploymentPlanned)
        await harness.trigger("d2", second)
        await harness.trigger("d3", third)
        queued2 = await wait_for_event(harness.store, "d2", DeploymentQueued)
        queued3 = await wait_for_event(harness.store, "d3", DeploymentQueued)
        assert isinstance(queued2, DeploymentQueued) and isinstance(queued3, DeploymentQueued)
        assert (queued2.behind_deployment_id, queued3.behind_deployment_id) == ("d1", "d2")

        await harness.complete("d1", first)
        plan2 = await wait_for_event(harness.store, "d2", DeploymentPlanned)
        assert isinstance(plan2, DeploymentPlanned)
        assert (plan2.strategy, plan2.running_commit_hash) == ("pipeline", first)
        assert plan2.summary == "image account: v1 → v2"
        assert [s.name for s in plan2.stages] == [
            "K8S_CANARY_ROLLOUT",
            "ANALYSIS",
            "K8S_PRIMARY_ROLLOUT",
            "K8S_CANARY_CLEAN",
            "ROLLBACK",
        ]
        # d3 is still waiting behind d2.
        d3 = [e.event for e in await harness.store.read_stream("deployment-d3")]
        assert not any(isinstance(e, DeploymentPlanned) for e in d3)

        # A failed deployment does not become the running commit: d3 compares with `first`.
        await harness.complete("d2", second, status="FAILURE")
        plan3 = await wait_for_event(harness.store, "d3", DeploymentPlanned)
    assert isinstance(plan3, DeploymentPlanned)
    assert (plan3.running_commit_hash, plan3.summary) == (first, "image account: v1 → v3")


async def test_commit_matchers_decide_on_commit_triggers_in_pipecds_order(
    harness: Harness, work: WorkRepo
) -> None:
    """On-commit ("auto") triggers: commitMatcher beats the diff, alwaysUsePipeline beats it."""
    matchers = "  commitMatcher:\n    pipeline: '\\[canary\\]'\n    quickSync: '^hotfix'\n"
    config = PRD_CONFIG.format(name="account-prd") + matchers
    always = config + "  planner:\n    alwaysUsePipeline: true\n"
    steps = [
        ({**seed_files("account"), "account/prd/.pipe.yaml": config}, "initial"),
        # Only replicas change (the diff says quick sync, "scale").
        (service_files("account", "prd", replicas=5, config=config), "[canary] 5"),
        # The image changes (the diff says pipeline).
        (service_files("account", "prd", tag="v2", replicas=5, config=config), "hotfix: v2"),
        # alwaysUsePipeline comes before commitMatcher, whose quickSync would match.
        (service_files("account", "prd", tag="v2", replicas=3, config=always), "hotfix: 3"),
    ]
    commits = [(work.commit(files, message), message) for files, message in steps]
    plans = []
    async with running(*harness.components()):
        await harness.register("prd")
        for n, (commit, message) in enumerate(commits):
            await harness.trigger(f"d{n}", commit, message)
            plan = await wait_for_event(harness.store, f"d{n}", DeploymentPlanned)
            assert isinstance(plan, DeploymentPlanned)
            plans.append(plan)
            await harness.complete(f"d{n}", commit)
    assert [p.strategy for p in plans] == ["quick_sync", "pipeline", "quick_sync", "pipeline"]
    assert plans[1].reason == (
        "Sync progressively because the commit message was matching '\\\\[canary\\\\]'"
    )
    assert plans[2].reason == (
        "Quick sync by applying all manifests because the commit message was matching '^hotfix'"
    )
    assert plans[3].reason == "Sync with the specified pipeline (alwaysUsePipeline was set)"


async def test_broken_config_fails_the_plan_naming_file_and_line(
    harness: Harness, work: WorkRepo
) -> None:
    """A config error becomes DeploymentPlanFailed naming file:line; the next one still plans."""
    good = work.commit(seed_files("account"), "initial")
    broken = work.commit(
        {"account/prd/.pipe.yaml": "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\n"
         "spec:\n  pipeline:\n    stages:\n      - name: WAIT\n        with: {duration: soon}\n"},
        "oops",
    )  # fmt: skip
    async with running(*harness.components()):
        await harness.register("prd")
        await harness.trigger("d1", broken)
        failed = await wait_for_event(harness.store, "d1", DeploymentPlanFailed)
        await harness.trigger("d2", good)
        await wait_for_event(harness.store, "d2", DeploymentPlanned)
    assert isinstance(failed, DeploymentPlanFailed)
    assert failed.reason.startswith(
        "account/prd/.pipe.yaml:7:16: spec.pipeline.stages[0].with.duration: expected a duration"
    )


async def test_unknown_application_fails_the_plan(harness: Harness, work: WorkRepo) -> None:
    """A trigger for an application nobody registered fails with a reason saying so."""
    commit = work.commit(seed_files("account"), "initial")
    async with running(*harness.components()):
        await harness.trigger("d1", commit)
        failed = await wait_for_event(harness.store, "d1", DeploymentPlanFailed)
    assert isinstance(failed, DeploymentPlanFailed)
    assert failed.reason == (
        f"application {APP} is not registered; register it with `slipway app add` and sync again"
    )


async def test_unreachable_git_is_retried_in_order_then_gives_up(
    backends: Backends, tmp_path: Path
) -> None:
    """Git unreachable: the trigger is retried and keeps its place; after the deadline, it fails."""
    await backends.ensure_event_stream()
    harness = Harness(
        backends,
        GitCache(tmp_path / "cache", timeout_s=5),
        UNREACHABLE,
        give_up_after_s=1.0,
        retry_interval_s=0.2,
    )
    async with running(*harness.components()):
        await harness.register("prd")
        await harness.trigger("d1", "a" * 40)
        await harness.trigger("d2", "b" * 40)
        queued = await wait_for_event(harness.store, "d2", DeploymentQueued)
        failed1 = await wait_for_event(harness.store, "d1", DeploymentPlanFailed)
        failed2 = await wait_for_event(harness.store, "d2", DeploymentPlanFailed)
    assert isinstance(queued, DeploymentQueued) and queued.behind_deployment_id == "d1"
    for failed in (failed1, failed2):
        assert isinstance(failed, DeploymentPlanFailed)
        assert failed.reason.startswith("git is unavailable: unreachable:")
        assert failed.reason.endswith("(gave up after retrying for 1 s)")
    assert harness.consumer.stats.retried >= 1
    assert harness.consumer.stats.dead_lettered == 0
