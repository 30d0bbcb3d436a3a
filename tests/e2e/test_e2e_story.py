"""The seed's story end to end (DESIGN §1): every service its own process, replicas, real servers.

The story runner that `slipway demo --once` uses plays it; this test then
checks the outcome independently — from the event log, the API, kubesim and
the Slack receiver — and uses the CLI the way the seed's CI did
(`slipway app sync --wait-status SUCCESS`, whose exit code gates the build).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shared.eventlog import EventStore
from shared.events.base import Event
from shared.events.catalog import (
    AnalysisConcluded,
    DeploymentCompleted,
    DeploymentRollingBack,
    DeploymentStarted,
    default_registry,
)
from slipway_sandbox.demo_repo import image
from slipway_sandbox.kubesim_client import Kubesim
from slipway_sandbox.sandbox import Sandbox, SandboxOptions, prometheus_available
from slipway_sandbox.stack import present_services
from slipway_sandbox.storyrunner import StoryReport

REPLICAS = {"planner": 2, "executor": 2, "analysis": 2}


def _require_prometheus() -> None:
    if prometheus_available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("prometheus is required in CI (scripts/ensure-system-packages.sh installs it)")
    pytest.skip("prometheus is not installed (make test installs it)")


async def _events_of(store: EventStore, event_type: str) -> list[Event]:
    rows = await store.pool.fetch(
        "SELECT * FROM events WHERE event_type = $1 ORDER BY global_position", event_type
    )
    return [store.decode_row(row).event for row in rows]


def _cli(sandbox: Sandbox, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "SLIPWAY_API_URL": sandbox.stack.api_url,
        "SLIPWAY_API_KEY": sandbox.stack.api_key,
    }
    return subprocess.run(
        [sys.executable, "-m", "slipway_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _deployment_of(report: StoryReport, step: str) -> str:
    played = next(s for s in report.steps if s.key == step)
    assert played.deployment is not None, f"step {step} has no deployment"
    return played.deployment.deployment_id


def _statuses(completed: Sequence[Event], app_id: str) -> list[str]:
    return [
        e.status
        for e in completed
        if isinstance(e, DeploymentCompleted) and e.application_id == app_id
    ]


async def test_seed_story_with_replicas_and_ci_style_sync(sandbox_dir: Path) -> None:
    """Dev sync, prd canary, bad image rolled back with a Slack message, revert; CI exit codes."""
    _require_prometheus()
    missing = [s for s in ("analysis", "notifier") if s not in present_services()]
    assert not missing, f"the story needs every service; missing: {missing}"
    said: list[str] = []
    options = SandboxOptions(
        data_dir=sandbox_dir / "sandbox", say=said.append, replicas=REPLICAS, require_all=True
    )
    async with Sandbox(options) as sandbox:
        report = await sandbox.play()
        assert report.ok, "\n".join(said)
        assert sandbox.pool is not None and sandbox.stack.kubesim is not None
        store = EventStore(sandbox.pool, default_registry())
        api = sandbox.api_client()
        prd = (await asyncio.to_thread(api.get_application, "account-prd"))["application_id"]
        dev = (await asyncio.to_thread(api.get_application, "account-dev"))["application_id"]

        # The event log tells the story: prd v1, v2 (canary), v3 failed, revert; dev once.
        completed = await _events_of(store, "deployment_completed")
        assert _statuses(completed, prd) == ["SUCCESS", "SUCCESS", "FAILURE", "SUCCESS"]
        assert _statuses(completed, dev) == ["SUCCESS"]
        bad = _deployment_of(report, "bad")
        rolling_back = await _events_of(store, "deployment_rolling_back")
        assert [e.deployment_id for e in rolling_back if isinstance(e, DeploymentRollingBack)] == [
            bad
        ]
        verdicts = {
            e.deployment_id: e.verdict
            for e in await _events_of(store, "analysis_concluded")
            if isinstance(e, AnalysisConcluded)
        }
        assert verdicts == {_deployment_of(report, "prd"): "success", bad: "failure"}

        # Slack was told, and the notifier recorded the delivery.
        about_prd = [m for m in sandbox.receiver.messages if "account-prd" in str(m)]
        assert about_prd, sandbox.receiver.messages
        assert await _events_of(store, "notification_delivered")

        # The revert deployed the old image: kubesim runs v2, applied at the revert commit.
        kubesim = Kubesim(sandbox.stack.kubesim.url)
        live: Any = await asyncio.to_thread(kubesim.deployment, "prd", "account")
        assert live["spec"]["template"]["spec"]["containers"][0]["image"] == image("v2")
        annotations = live["metadata"]["annotations"]
        assert annotations["slipway.dev/commit"] == sandbox.repo.head()
        assert annotations["slipway.dev/deployment"] == _deployment_of(report, "revert")

        # Two replicas of each scaled service ran the story and are still up.
        instances = {p.instance for p in sandbox.stack.processes if p.exited() is None}
        for name, count in REPLICAS.items():
            assert {f"{name}-{i}" for i in range(count)} <= instances
        started = await _events_of(store, "deployment_started")
        assert {e.executor for e in started if isinstance(e, DeploymentStarted)} <= {
            "executor-0",
            "executor-1",
        }

        # CI: a sync that succeeds exits 0 ...
        ok = await asyncio.to_thread(
            _cli,
            sandbox,
            "app",
            "sync",
            "account-dev",
            "--wait-status",
            "SUCCESS",
            "--timeout",
            "120",
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        # ... and one whose deployment fails (the running image turned bad; the canary's
        # analysis catches it and rolls back) exits non-zero.
        await asyncio.to_thread(kubesim.add_image_rule, "*:v2", 0.5)
        failed = await asyncio.to_thread(
            _cli,
            sandbox,
            "app",
            "sync",
            "account-prd",
            "--strategy",
            "pipeline",
            "--wait-status",
            "SUCCESS",
            "--timeout",
            "120",
        )
        assert failed.returncode == 1, failed.stdout + failed.stderr
        completed = await _events_of(store, "deployment_completed")
        assert _statuses(completed, prd)[-1] == "FAILURE"
