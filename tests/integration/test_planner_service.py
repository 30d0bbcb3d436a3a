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
from shared.applications import application_of
from shared.events.catalog import (
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationRegistered,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentQueued,
)
from shared.git import GitCache
from tests.support import Backends, running
from tests.support.git_helpers import WorkRepo
from tests.support.planner import APP, Harness, wait_for_event
from tests.support.seed_repo import PRD_CONFIG, image_bump, seed_files, service_files

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


async def test_a_resource_route_to_no_provider_fails_the_plan_at_its_line(
    backends: Backends, tmp_path: Path, work: WorkRepo
) -> None:
    """`resourceRoutes` naming a provider the control config lacks fails at planning, naming
    the file, the line and the provider; one naming a known provider plans."""
    await backends.ensure_event_stream()
    providers = {"prd": {"env": "prd"}, "edge": {"env": "prd", "tier": "edge"}}
    harness = Harness(
        backends, GitCache(tmp_path / "cache"), work.url, platform_providers=providers
    )
    config = "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  resourceRoutes:\n"
    route = "    - match: {{kind: Service}}\n      provider: {{name: {name}}}\n"
    files = seed_files("account")
    work.commit(files, "initial")
    nowhere = work.commit({"account/prd/.pipe.yaml": config + route.format(name="cdn")}, "cdn")
    edge = work.commit({"account/prd/.pipe.yaml": config + route.format(name="edge")}, "edge")
    async with running(*harness.components()):
        await harness.register("prd")
        await harness.trigger("d1", nowhere)
        failed = await wait_for_event(harness.store, "d1", DeploymentPlanFailed)
        await harness.trigger("d2", edge)
        await wait_for_event(harness.store, "d2", DeploymentPlanned)
    assert isinstance(failed, DeploymentPlanFailed)
    assert failed.reason == (
        "account/prd/.pipe.yaml:6:18: spec.resourceRoutes[0].provider.name: platform provider "
        "'cdn' is not in the control config (known: prd, edge)"
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


def _credentials(password: str, url_password: str) -> dict[str, str]:
    return {
        "account/prd/credentials.yaml": f"""apiVersion: v1
kind: Secret
metadata:
  name: account-db
stringData:
  password: {password}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: account-env
data:
  DATABASE_URL: postgres://account:{url_password}@db:5432/account
"""
    }


async def test_the_plan_records_its_manifest_diff_with_secrets_kept_out(
    harness: Harness, work: WorkRepo
) -> None:
    """The console shows a plan's manifest diff from DeploymentPlanned: the diff the planner
    chose from, with a Secret's values masked and a credential in a ConfigMap redacted."""
    first = work.commit({**seed_files("account"), **_credentials("hunter2-old", "Old-Pw-1")})
    second = work.commit(
        {**image_bump("account", "prd", "v2"), **_credentials("hunter2-new", "New-Pw-2")}
    )
    async with running(*harness.components()):
        await harness.register("prd")
        await harness.trigger("d1", first)
        initial = await wait_for_event(harness.store, "d1", DeploymentPlanned)
        await harness.complete("d1", first)
        await harness.trigger("d2", second)
        plan = await wait_for_event(harness.store, "d2", DeploymentPlanned)
    assert isinstance(initial, DeploymentPlanned) and isinstance(plan, DeploymentPlanned)
    # The first deployment has nothing running to compare with: every resource is added.
    assert "(added)" in initial.diff and "hunter2" not in initial.diff
    assert "# 1. " in plan.diff and "v1" in plan.diff and "v2" in plan.diff, plan.diff
    assert "Secret" in plan.diff and "ConfigMap" in plan.diff, plan.diff
    for secret in ("hunter2-old", "hunter2-new", "Old-Pw-1", "New-Pw-2"):
        assert secret not in plan.diff, plan.diff
    assert "*****" in plan.diff, plan.diff


async def test_the_plan_records_the_config_file_redacted(harness: Harness, work: WorkRepo) -> None:
    """The console shows the config file at the running commit from the plan of the
    deployment that ran it: recorded as the repository has it, credentials masked."""
    config = PRD_CONFIG.format(name="account-prd") + (
        "# alerts go to https://bot:Hunter2Token@hooks.example.com/slipway\n"
    )
    commit = work.commit(
        {**seed_files("account"), **service_files("account", "prd", config=config)}
    )
    async with running(*harness.components()):
        await harness.register("prd")
        await harness.trigger("d1", commit)
        plan = await wait_for_event(harness.store, "d1", DeploymentPlanned)
    assert isinstance(plan, DeploymentPlanned)
    assert PRD_CONFIG.format(name="account-prd") in plan.config_text
    assert "Hunter2Token" not in plan.config_text
    assert "hooks.example.com/slipway" in plan.config_text
