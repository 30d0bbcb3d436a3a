"""Issue 19, items 4 and 5: a config that cannot work fails where a user looks, early.

- A broken `.pipe.yaml` merged to main fails its deployment at planning; a route
  for `DEPLOYMENT_FAILED` hears of it with the plan error (the real planner and
  notifier, a local HTTP receiver), a route for `DEPLOYMENT_TRIGGER_FAILED` still
  does, and `deployment get` / `list` / `logs` (the CLI over the real API and
  projection) show it as FAILURE with the error.
- `slipway config check` prints every problem of every file, across files
  (templates in `.pipe/`, `appArgs`, traffic routing), with file:line and field,
  and exits 2 (a configuration error, as the README says).
- An ANALYSIS stage naming a template `.pipe/` does not have fails the
  deployment at planning, naming file and field — before any canary is out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from shared.eventlog import EventStore
from shared.events.catalog import DeploymentPlanFailed, DeploymentPlanned
from shared.git import GitCache
from shared.testing import wait_until
from slipway_sandbox.seed_layout import PRD_CONFIG
from tests.support import Backends, running
from tests.support.api import api_key_for, running_projection, served_api
from tests.support.cli import Cli
from tests.support.git_helpers import WorkRepo
from tests.support.notifier import (
    notification_events,
    notifier_running,
    receivers,
    write_config,
)
from tests.support.paths import REPO_ROOT
from tests.support.planner import Harness, wait_for_event
from tests.support.seed_repo import seed_files

ROOT = REPO_ROOT
WAIT_S = 30.0

BROKEN = (
    "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\n"
    "spec:\n  pipeline:\n    stages:\n      - name: WAIT\n        with: {duration: soon}\n"
)
PLAN_ERROR = (
    "account/prd/.pipe.yaml:7:16: spec.pipeline.stages[0].with.duration: expected a duration"
)


async def test_broken_config_on_main_notifies_deployment_failed_and_shows_everywhere(
    backends: Backends,
    tmp_path: Path,
    work: WorkRepo,
    projector_store: EventStore,
    api_pool: asyncpg.Pool,
) -> None:
    """Merged broken config → DeploymentPlanFailed → DEPLOYMENT_FAILED to its route (with the
    plan error); a receiver routing both types gets one DEPLOYMENT_TRIGGER_FAILED with the
    mentions of either; the CLI shows FAILURE and the error in get, list and logs."""
    await backends.ensure_event_stream()
    store = backends.store
    harness = Harness(backends, GitCache(tmp_path / "cache"), work.url)  # its relay unused
    work.commit(seed_files("account"), "initial")
    broken = work.commit({"account/prd/.pipe.yaml": BROKEN}, "oops: a broken config on main")
    async with receivers() as server:
        control = write_config(
            tmp_path / "slipway.yaml",
            server,
            routes=[
                {"name": "failed", "receiver": "hook", "events": ["DEPLOYMENT_FAILED"]},
                # Both types: one message (the more specific), the mentions of either.
                {
                    "name": "both",
                    "receiver": "slack",
                    "events": ["DEPLOYMENT_TRIGGER_FAILED", "DEPLOYMENT_FAILED"],
                },
            ],
            slack_mentions=[{"event": "DEPLOYMENT_FAILED", "slackUsers": ["U9"]}],
        )
        async with (
            notifier_running(control, backends),  # with the relay the planner hears through
            running(harness.consumer.run, harness.planner.retry_waiting),
        ):
            await harness.register("prd")
            await harness.trigger("d1", broken, "oops: a broken config on main")
            failed = await wait_for_event(store, "d1", DeploymentPlanFailed)
            await wait_until(
                lambda: len(server.at("/hook")) >= 1 and len(server.at("/slack")) >= 1,
                within_s=WAIT_S,
                what=lambda: f"received {[(r.path, r.headers) for r in server.received]}",
            )
            # One event's notifications are scheduled in one transaction: all there now.
            scheduled = await notification_events(store.pool)
            assert scheduled["notification_scheduled"] == 2, scheduled
    assert isinstance(failed, DeploymentPlanFailed)
    assert failed.reason.startswith(PLAN_ERROR)
    (hook,) = server.at("/hook")
    assert hook.headers["Slipway-Event"] == "DEPLOYMENT_FAILED"
    assert hook.body["type"] == "DEPLOYMENT_FAILED"
    assert hook.body["title"] == 'Deployment for "account-prd" failed'
    assert hook.body["reason"].startswith(PLAN_ERROR)
    assert hook.body["deployment"]["status"] == "FAILURE"
    (slack,) = server.at("/slack")
    assert slack.headers["Slipway-Event"] == "DEPLOYMENT_TRIGGER_FAILED"
    assert slack.body["text"].endswith("<@U0> <@U9>")

    # Where users look: `deployment get`, `list` and `logs`, over the API and projection.
    async with (
        running_projection(projector_store),
        served_api(store, api_pool, nc=backends.nc, subjects=backends.subjects) as url,
    ):
        cli = Cli(url, api_key_for(url))
        got = await cli("deployment", "get", "d1", "--json")
        assert got.code == 0, got.err
        deployment = json.loads(got.out)
        assert deployment["status"] == "FAILURE"
        assert deployment["reason"].startswith(PLAN_ERROR)

        async def listed() -> dict[str, object] | None:
            done = await cli("deployment", "list", "--json")
            rows = [d for d in json.loads(done.out) if d["deployment_id"] == "d1"]
            return rows[0] if rows and rows[0]["status"] == "FAILURE" else None

        row = await wait_until(listed, within_s=WAIT_S, what="d1 listed as FAILURE")
        assert str(row["reason"]).startswith(PLAN_ERROR)
        text = await cli("deployment", "get", "d1")
        assert f"status:      FAILURE ({PLAN_ERROR}" in text.out

        logs = await cli("deployment", "logs", "d1")
        assert logs.code == 0, logs.err
        assert "plan       ERROR   planning failed: " + PLAN_ERROR in logs.out
        followed = await cli("deployment", "logs", "d1", "--follow")
        assert followed.code == 1  # it failed (README: 1, the deployment failed)
        assert "planning failed: " + PLAN_ERROR in followed.out
        assert "deployment d1 FAILURE" in followed.err
        as_json = await cli("deployment", "logs", "d1", "--json")
        (line,) = [json.loads(x) for x in as_json.out.splitlines()]
        assert (line["stage_id"], line["severity"]) == ("plan", "ERROR")
        assert line["message"].startswith("planning failed: " + PLAN_ERROR)


TEMPLATE = """\
apiVersion: pipecd.dev/v1beta1
kind: AnalysisTemplate
spec:
  metrics:
    errors:
      strategy: THRESHOLD
      interval: 1m
      provider: prometheus
      expected: {max: 0.01}
      query: rate(errors{job="{{ .AppCustomArgs.service }}", ns="{{ .AppCustomArgs.ns }}"}[1m])
"""

WEB = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
      - name: ANALYSIS
        with:
          duration: 5m
          metrics:
            - template:
                name: error_rate
            - template:
                name: errors
                appArgs:
                  service: web
      - name: WAIT_APPROVAL
        with:
          minApproverNum: 0
      - name: K8S_TRAFFIC_ROUTING
        with:
          primary: 50
          canary: 50
"""

API = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  pipeline:
    stages:
      - name: ANALYSIS
        with:
          metrics:
            - template:
                name: errors
      - name: SCRIPT_RUN
        with: {run: " "}
"""


def test_config_check_prints_every_error_across_files_and_exits_2(tmp_path: Path) -> None:
    """Several problems in two configs, some only visible with `.pipe/`: all printed, each
    with file:line:col and field, in file order; exit 2. Good files still say ok."""
    repo = tmp_path / "repo"
    for path, text in {
        ".pipe/templates.yaml": TEMPLATE,
        "web/prd/.pipe.yaml": WEB,
        "api/prd/.pipe.yaml": API,
        "ok/prd/.pipe.yaml": "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec: {}\n",
    }.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    (repo / ".git").mkdir()  # the repository's root, where `.pipe/` is looked for

    done = subprocess.run(
        [sys.executable, "-m", "slipway_cli", "config", "check", str(repo)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    api, web = repo / "api/prd/.pipe.yaml", repo / "web/prd/.pipe.yaml"
    stages = "spec.pipeline.stages"
    assert done.stdout.splitlines() == [
        f"ok  {repo / '.pipe/templates.yaml'}  (AnalysisTemplate 1 template)",
        f"ERR {api}:8:11: {stages}[0].with.duration: the ANALYSIS stage needs a duration, "
        'like "10m"',
        f'ERR {api}:9:15: {stages}[0].with.metrics[0].template: template "errors" uses '
        "{{ .AppCustomArgs.service }}, {{ .AppCustomArgs.ns }}; appArgs must give service, ns",
        f"ERR {api}:12:16: {stages}[1].with.run: SCRIPT_RUN needs `run:` (the script to run)",
        f"ok  {repo / 'ok/prd/.pipe.yaml'}  (KubernetesApp prd)",
        f"ERR {web}:12:17: {stages}[1].with.metrics[0].template.name: no metrics template "
        '"error_rate" in .pipe/ (known: errors)',
        f'ERR {web}:15:17: {stages}[1].with.metrics[1].template.appArgs: template "errors" '
        "uses {{ .AppCustomArgs.ns }}; appArgs must give ns",
        f"ERR {web}:19:11: {stages}[2].with.minApproverNum: expected at least 1, got 0",
        f"ERR {web}:21:9: {stages}[3].with: the podselector method (spec.trafficRouting.method, "
        "the default) sends all traffic to one variant: give one of primary/canary/baseline "
        "100, or route with istio",
    ]

    as_json = subprocess.run(
        [sys.executable, "-m", "slipway_cli", "config", "check", "--json", str(web)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert as_json.returncode == 2
    (result,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(e["line"], e["field_path"]) for e in result["errors"]] == [
        (12, f"{stages}[1].with.metrics[0].template.name"),
        (15, f"{stages}[1].with.metrics[1].template.appArgs"),
        (19, f"{stages}[2].with.minApproverNum"),
        (21, f"{stages}[3].with"),
    ]
    assert result["error"] == result["errors"][0]


@pytest.fixture
async def harness(backends: Backends, tmp_path: Path, work: WorkRepo) -> Harness:
    await backends.ensure_event_stream()
    return Harness(backends, GitCache(tmp_path / "cache"), work.url)


async def test_missing_analysis_template_fails_at_planning_not_after_the_canary(
    harness: Harness, work: WorkRepo
) -> None:
    """The prd pipeline (canary → ANALYSIS → primary) naming a template `.pipe/` lacks: the
    plan fails naming the file and field, so no canary is ever rolled out; fixed, it plans."""
    good = work.commit(seed_files("account"), "initial")
    missing = work.commit(
        {
            "account/prd/.pipe.yaml": PRD_CONFIG.format(name="account-prd").replace(
                "name: grpc_error_rate", "name: grpc_error_ratio"
            )
        },
        "typo in the template name",
    )
    async with running(*harness.components()):
        await harness.register("prd")
        await harness.trigger("d1", missing)
        failed = await wait_for_event(harness.store, "d1", DeploymentPlanFailed)
        await harness.trigger("d2", good)
        await wait_for_event(harness.store, "d2", DeploymentPlanned)
    assert isinstance(failed, DeploymentPlanFailed)
    assert failed.reason == (
        "account/prd/.pipe.yaml:18:17: spec.pipeline.stages[1].with.metrics[0].template.name: "
        'no metrics template "grpc_error_ratio" in .pipe/ (known: grpc_error_rate)'
    )
    history = [type(r.event).__name__ for r in await harness.store.read_stream("deployment-d1")]
    assert history == ["DeploymentTriggered", "DeploymentPlanFailed"]


def test_plan_preview_reports_the_missing_template_and_appargs_of_a_branch(work: WorkRepo) -> None:
    """Plan preview runs the planner's cross-file checks: a branch whose prd ANALYSIS names
    a missing template is listed as not plannable, naming file:line and field; exit 1."""
    work.commit(seed_files("account"), "initial")
    work.checkout_new_branch("typo")
    work.commit(
        {
            "account/prd/.pipe.yaml": PRD_CONFIG.format(name="account-prd").replace(
                "name: grpc_error_rate", "name: grpc_error_ratio"
            )
        },
        "typo in the template name",
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SLIPWAY_API_"))}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "slipway_cli", "plan-preview", "--repo", str(work.path)),
            *("--base-branch", "main", "--head-branch", "typo"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "NOTE: 1 application could not be planned:" in done.stdout
    assert (
        "account/prd/.pipe.yaml:18:17: spec.pipeline.stages[1].with.metrics[0].template.name: "
        'no metrics template "grpc_error_ratio" in .pipe/'
    ) in done.stdout
