"""Issue 13's cut-over, end to end: a cluster PipeCD left behind, `slipway app import`, then
the seed's story, a ConfigMap-only change and a Helm chart bump, in one sandbox.

The cluster is populated the way piped leaves it: each application's objects
applied with a client-side `kubectl apply`, carrying PipeCD's annotations
(`pipecd.dev/managed-by: piped`, `pipecd.dev/application`,
`pipecd.dev/commit-hash`) and no Slipway label. Three applications: the
seed's `account-dev` and `account-prd`, and `web`, a local Helm chart whose
Deployment reads a ConfigMap. `slipway app import --from-file` (the CLI, as an
operator runs it) takes them over; then the seed's story steps play with the
sandbox's story runner — dev quick sync; prd canary → analysis → primary →
clean, planned as a PIPELINE against PipeCD's commit (without the import it
would be prd's first deployment, a QUICK_SYNC); a bad image failing analysis
and rolled back; a `git revert` — and `web` takes a ConfigMap-only change
(the primary's pods roll: `pipecd.dev/config-hash`) and a chart bump deployed
with a canary.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim.testing import Kubectl, find_kubectl
from shared.eventlog import EventStore
from shared.events.catalog import DeploymentPlanned, DeploymentTriggered, default_registry
from shared.events.streams import deployment_stream
from shared.testing import wait_until
from slipway_sandbox.control import REPOSITORY_ID
from slipway_sandbox.demo_repo import DemoTiming, app_name, image, manifests
from slipway_sandbox.kubesim_client import Kubesim
from slipway_sandbox.sandbox import Sandbox, SandboxOptions, prometheus_available
from slipway_sandbox.story import DeploymentOutcome, Story
from slipway_sandbox.story_outcomes import FINAL_STATUSES, fold_deployment
from slipway_sandbox.storyrunner import StoryRunner
from tests.support.helm import HELM

TIMING = DemoTiming(analysis_s=8, analysis_interval_s=2, rate_window_s=4)
WEB = "web"
WEB_NAMESPACE = "shop"
WEB_CONFIG = f"""\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {WEB}
  input:
    namespace: {WEB_NAMESPACE}
    autoCreateNamespace: true
    helmChart: {{path: chart}}
    helmOptions: {{releaseName: {WEB}}}
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        with: {{replicas: 1}}
      - name: K8S_PRIMARY_ROLLOUT
      - name: K8S_CANARY_CLEAN
"""
CANARY_STAGES = ("K8S_CANARY_ROLLOUT", "K8S_PRIMARY_ROLLOUT", "K8S_CANARY_CLEAN")
CHART_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels: {app: web}
  annotations: {chart-version: '{{ .Chart.Version }}'}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web, pipecd.dev/variant: primary}
  template:
    metadata:
      labels: {app: web, pipecd.dev/variant: primary}
    spec:
      containers:
        - name: web
          image: 'registry.example/shop/web:{{ .Values.tag }}'
          envFrom: [{configMapRef: {name: '{{ .Release.Name }}-config'}}]
"""
CHART_CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: '{{ .Release.Name }}-config'}
data: {GREETING: {{ .Values.greeting | quote }}}
"""


def web_files(version: str, tag: str, greeting: str) -> dict[str, str]:
    return {
        "web/.pipe.yaml": WEB_CONFIG,
        "web/chart/Chart.yaml": f"apiVersion: v2\nname: web\nversion: {version}\n",
        "web/chart/values.yaml": f"tag: {tag}\ngreeting: {greeting}\n",
        "web/chart/templates/deployment.yaml": CHART_DEPLOYMENT,
        "web/chart/templates/config.yaml": CHART_CONFIG,
    }


def pipecd_applied(documents: str, *, app_id: str, commit: str, namespace: str) -> str:
    """`documents` as piped applies them: in the app's namespace, with its annotations."""
    out = []
    for document in yaml.safe_load_all(documents):
        if not document:
            continue
        metadata = document.setdefault("metadata", {})
        metadata["namespace"] = namespace
        metadata.setdefault("annotations", {}).update(
            {
                "pipecd.dev/managed-by": "piped",
                "pipecd.dev/application": app_id,
                "pipecd.dev/commit-hash": commit,
                "pipecd.dev/piped": "piped-1",
            }
        )
        out.append(yaml.safe_dump(document, sort_keys=False))
    return "---\n".join(out)


def _cli(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "SLIPWAY_API_URL": sandbox.stack.api_url,
        "SLIPWAY_API_KEY": sandbox.stack.api_key,
    }
    return subprocess.run(
        [sys.executable, "-m", "slipway_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _deployment_after(
    store: EventStore, mark: int, app_id: str, within_s: float = 120.0
) -> DeploymentOutcome:
    """The first deployment of `app_id` triggered after log position `mark`, once completed."""

    async def triggered() -> str | None:
        rows = await store.pool.fetch(
            "SELECT * FROM events WHERE event_type = 'deployment_triggered'"
            " AND global_position > $1 ORDER BY global_position",
            mark,
        )
        for row in rows:
            event = store.decode_row(row).event
            if isinstance(event, DeploymentTriggered) and event.application_id == app_id:
                return event.deployment_id
        return None

    deployment_id = await wait_until(triggered, within_s, f"a deployment of {app_id}")

    async def completed() -> DeploymentOutcome | None:
        events = [r.event for r in await store.read_stream(deployment_stream(deployment_id))]
        outcome = fold_deployment(deployment_id, events)
        return outcome if outcome.status in FINAL_STATUSES else None

    return await wait_until(completed, within_s, f"deployment {deployment_id} to complete")


async def _planned(store: EventStore, deployment_id: str) -> DeploymentPlanned:
    events = [r.event for r in await store.read_stream(deployment_stream(deployment_id))]
    return next(e for e in events if isinstance(e, DeploymentPlanned))


async def _log_position(store: EventStore) -> int:
    return int(await store.pool.fetchval("SELECT coalesce(max(global_position), 0) FROM events"))


async def _replicasets(kubectl: Kubectl, namespace: str, owner: str) -> set[str]:
    listed = (await kubectl("get", "rs", "-n", namespace, "-o", "json")).json()["items"]
    return {
        rs["metadata"]["name"]
        for rs in listed
        if any(o.get("name") == owner for o in rs["metadata"].get("ownerReferences") or ())
    }


def _pod_template_annotations(live: Mapping[str, Any] | None) -> dict[str, str]:
    assert live is not None
    return dict(live["spec"]["template"]["metadata"].get("annotations") or {})


async def test_cutover_from_pipecd_import_then_story_config_change_and_chart_bump(
    sandbox_dir: Path,
) -> None:
    if not prometheus_available():
        pytest.skip("prometheus is not installed (make test installs it)")
    binary = find_kubectl()
    if binary is None or HELM is None:
        pytest.skip("kubectl and helm are needed (make test installs them)")
    said: list[str] = []
    options = SandboxOptions(data_dir=sandbox_dir / "sandbox", say=said.append, timing=TIMING)
    async with Sandbox(options) as sandbox:
        assert sandbox.pool is not None and sandbox.stack.kubesim is not None
        assert sandbox.story is not None and sandbox.with_analysis
        kubeconfig = sandbox.stack.kubesim.kubeconfig
        kubectl = Kubectl(binary, kubeconfig, sandbox_dir / "kubectl-cache")
        store = EventStore(sandbox.pool, default_registry())
        repo = sandbox.repo

        # What PipeCD left: every application applied client-side at the commit it deployed.
        pipecd_commit = await asyncio.to_thread(
            repo.commit, web_files("0.1.0", "v1", "hello"), "web: chart 0.1.0"
        )
        for namespace in ("dev", "prd", WEB_NAMESPACE):
            namespace_yaml = f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n"
            await kubectl("apply", "-f", "-", stdin=namespace_yaml)
        for env in ("dev", "prd"):
            applied = pipecd_applied(
                manifests("v1", TIMING),
                app_id=f"pipecd-{app_name(env)}",
                commit=pipecd_commit,
                namespace=env,
            )
            await kubectl("apply", "-f", "-", stdin=applied)
        assert HELM is not None
        rendered = await asyncio.to_thread(
            subprocess.run,
            [HELM, "template", WEB, str(repo.path / "web" / "chart")],
            capture_output=True,
            text=True,
            check=True,
        )
        await kubectl(
            "apply",
            "-f",
            "-",
            stdin=pipecd_applied(
                rendered.stdout, app_id="pipecd-web", commit=pipecd_commit, namespace=WEB_NAMESPACE
            ),
        )
        for namespace, name in (("dev", "account"), ("prd", "account"), (WEB_NAMESPACE, WEB)):
            await kubectl("rollout", "status", f"deploy/{name}", "-n", namespace, "--timeout=60s")
        before: Any = (await kubectl("get", "deploy", "account", "-n", "prd", "-o", "json")).json()
        assert "slipway.dev/application" not in before["metadata"].get("labels", {})

        # The cut-over: register (the seed's pipectl script), then `slipway app import`.
        steps = sandbox.story.steps[1:]  # bootstrap's quick sync is what the import replaces
        runner = StoryRunner(
            story=Story(steps, TIMING, with_analysis=True),
            repo=repo,
            api=sandbox.api_client(),
            kubesim=Kubesim(sandbox.stack.kubesim.url),
            pool=sandbox.pool,
            receiver=sandbox.receiver,
            present=sandbox.present,
            say=said.append,
        )
        await runner.register([app_name("dev"), app_name("prd")])
        apps_file = sandbox_dir / "apps.yaml"
        entries = [
            {"name": app_name(env), "pipecdAppId": f"pipecd-{app_name(env)}"}
            for env in ("dev", "prd")
        ]
        entries.append(
            {
                "name": WEB,
                "pipecdAppId": "pipecd-web",
                "repo": REPOSITORY_ID,
                "path": "web",
                "configFilename": ".pipe.yaml",
            }
        )
        apps_file.write_text(yaml.safe_dump({"applications": entries}))
        imported = await asyncio.to_thread(
            _cli,
            sandbox,
            "app",
            "import",
            "--from-file",
            str(apps_file),
            "--kubeconfig",
            str(kubeconfig),
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        assert imported.stdout.count(f"running commit {pipecd_commit[:12]}") == 3, imported.stdout
        web_id = str((await asyncio.to_thread(runner.api.get_application, WEB))["application_id"])
        taken: Any = (await kubectl("get", "deploy", "account", "-n", "prd", "-o", "json")).json()
        assert (
            taken["metadata"]["labels"]["slipway.dev/application"] == runner.app_ids["account-prd"]
        )

        # The seed's four steps: dev quick sync, prd canary + analysis, bad image, revert.
        report = await runner.play()
        assert report.ok, "\n".join(said)
        prd_step = next(s for s in report.steps if s.key == "prd")
        assert prd_step.deployment is not None
        planned = await _planned(store, prd_step.deployment.deployment_id)
        assert planned.strategy == "pipeline"
        assert planned.running_commit_hash == pipecd_commit  # from pipecd.dev/commit-hash

        # A ConfigMap-only change: the primary's pods roll (a new ReplicaSet), image unchanged.
        kubesim = runner.kubesim
        sets_before = await _replicasets(kubectl, WEB_NAMESPACE, WEB)
        hash_before = _pod_template_annotations(
            await asyncio.to_thread(kubesim.deployment, WEB_NAMESPACE, WEB)
        ).get("pipecd.dev/config-hash")
        mark = await _log_position(store)
        await asyncio.to_thread(
            repo.commit, web_files("0.1.0", "v1", "bonjour"), "web: greet in French"
        )
        outcome = await _deployment_after(store, mark, web_id)
        assert outcome.status == "SUCCESS", (outcome, "\n".join(said))
        assert outcome.strategy == "pipeline"
        assert tuple(s.name for s in outcome.stages) == CANARY_STAGES
        config: Any = (
            await kubectl("get", "configmap", "web-config", "-n", WEB_NAMESPACE, "-o", "json")
        ).json()
        assert config["data"] == {"GREETING": "bonjour"}
        live = await asyncio.to_thread(kubesim.deployment, WEB_NAMESPACE, WEB)
        hash_after = _pod_template_annotations(live).get("pipecd.dev/config-hash")
        assert hash_after and hash_after != hash_before
        assert len(await _replicasets(kubectl, WEB_NAMESPACE, WEB) - sets_before) == 1

        # A chart bump (new version, new image) deployed with a canary.
        mark = await _log_position(store)
        await asyncio.to_thread(
            repo.commit, web_files("0.2.0", "v2", "bonjour"), "web: chart 0.2.0 (image v2)"
        )
        outcome = await _deployment_after(store, mark, web_id)
        assert outcome.status == "SUCCESS", (outcome, "\n".join(said))
        assert tuple(s.name for s in outcome.stages) == CANARY_STAGES
        assert all(s.status == "SUCCESS" for s in outcome.stages), outcome
        live = await asyncio.to_thread(kubesim.deployment, WEB_NAMESPACE, WEB)
        assert live is not None
        assert live["metadata"]["annotations"]["chart-version"] == "0.2.0"
        assert live["spec"]["template"]["spec"]["containers"][0]["image"].endswith("web:v2")
        assert await asyncio.to_thread(kubesim.deployment, WEB_NAMESPACE, f"{WEB}-canary") is None
        assert (
            image("v2")
            == ((await asyncio.to_thread(kubesim.deployment, "prd", "account")) or {})["spec"][
                "template"
            ]["spec"]["containers"][0]["image"]
        )
