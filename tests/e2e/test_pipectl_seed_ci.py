"""The seed's pipectl scripts run unchanged against the sandbox (issue 13, item 6).

`tests/fixtures/pipectl/` holds the scripts as a PipeCD user has them: the
bulk registration per environment and the CI step `pipectl application sync
--app-id X --wait-status DEPLOYMENT_SUCCESS`. They run here with `pipectl`
on PATH being the console script `tools/pipectl` declares, against the whole
sandbox (every service, kubesim), and exit as pipectl would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from kubesim.testing import eventually
from slipway_sandbox.control import PLATFORM_PROVIDER, REPOSITORY_ID
from slipway_sandbox.demo_repo import DemoRepo, DemoTiming, image_bump
from slipway_sandbox.sandbox import Sandbox, SandboxOptions
from tests.support.paths import REPO_ROOT

SCRIPTS = REPO_ROOT / "tests" / "fixtures" / "pipectl"

# One sandbox for the module: starting one takes most of its time.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass(frozen=True)
class Pipectl:
    """Runs commands with the sandbox's `pipectl` on PATH and the seed's variables set."""

    env: Mapping[str, str]
    flags: tuple[str, ...]
    """What every pipectl call of the seed's scripts passes: --address, --api-key-file…"""
    repo: Path

    async def script(self, name: str, *args: str, **env: str) -> Ran:
        return await self._run([str(SCRIPTS / name), *args], env)

    async def __call__(self, *args: str) -> Ran:
        return await self._run(["pipectl", *args, *self.flags], {})

    async def _run(self, argv: list[str], env: Mapping[str, str]) -> Ran:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.repo,
            env={**self.env, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(240):
            out, err = await process.communicate()
        assert process.returncode is not None
        return Ran(process.returncode, out.decode(), err.decode(), time.monotonic() - started)


def pipectl_script(bin_dir: Path) -> Path:
    """`pipectl` as pip would install it from `tools/pipectl/pyproject.toml`'s entry point."""
    declared = tomllib.loads((REPO_ROOT / "tools" / "pipectl" / "pyproject.toml").read_text())
    module, _, function = declared["project"]["scripts"]["pipectl"].partition(":")
    script = bin_dir / "pipectl"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
    )
    script.chmod(0o755)
    return script


def pull_request_branch(repo: DemoRepo) -> tuple[str, str]:
    """CI's pull request: branch `bump` with prd's image at v2; main stays. (main, bump)."""
    base = repo.head()
    subprocess.run(["git", "-C", str(repo.path), "checkout", "-q", "-b", "bump"], check=True)
    head = repo.commit(image_bump("prd", "v2", DemoTiming()), "account: prd to v2")
    subprocess.run(["git", "-C", str(repo.path), "checkout", "-q", "main"], check=True)
    assert repo.head() == base
    return base, head


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox() -> AsyncIterator[Sandbox]:
    # Not under pytest's basetemp (see test_first_hour_state: PostgreSQL's user must reach it).
    data_dir = Path(tempfile.mkdtemp(prefix="slipway-pipectl-"))
    try:
        async with Sandbox(SandboxOptions(data_dir=data_dir, say=lambda _: None)) as running:
            yield running
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pipectl(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Pipectl:
    tmp_path = tmp_path_factory.mktemp("pipectl")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pipectl_script(bin_dir)
    key_file = tmp_path / "api-key"
    key_file.write_text(sandbox.stack.api_key + "\n")  # a trailing newline, as `echo` leaves
    address = sandbox.stack.api_url.removeprefix("http://")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_API")}
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
        "PIPECD_ADDRESS": address,
        "PIPECD_API_KEY_FILE": str(key_file),
        "PIPED_ID": "6d5e3a4f-piped-of-the-seed",
        "PLATFORM_PROVIDER": PLATFORM_PROVIDER,
        "REPO_ID": REPOSITORY_ID,
    }
    flags = ("--address", address, "--api-key-file", str(key_file), "--insecure")
    return Pipectl(env, flags, sandbox.repo.path)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def registered(pipectl: Pipectl) -> dict[str, dict[str, Any]]:
    """The seed's bulk registration, per environment; pipectl's view of each application."""
    for env in ("dev", "prd"):
        done = await pipectl.script("register-apps.sh", env)
        assert done.code == 0, done.err
        assert done.err.count("Successfully added application id = ") == 1

    async def listed() -> dict[str, Any] | None:
        answer = await pipectl("application", "list")
        assert answer.code == 0, answer.err
        return answer.json() if len(answer.json().get("applications", [])) == 2 else None

    page = await eventually(listed, within=30, interval=0.2, message="both listed")
    return {app["name"]: app for app in page["applications"]}


async def test_the_seeds_pipectl_scripts_register_deploy_and_wait_unchanged(
    sandbox: Sandbox, pipectl: Pipectl, registered: dict[str, dict[str, Any]]
) -> None:
    """Bulk registration and `sync --wait-status DEPLOYMENT_SUCCESS` work as with PipeCD."""
    app = registered["account-dev"]
    assert app["git_path"] == {
        "repo": {"id": REPOSITORY_ID},
        "path": "account/dev",
        "config_filename": ".pipe.yaml",
    }
    assert app["labels"]["service"] == "account"
    assert "kind" not in app  # KUBERNETES is 0: Go's encoding/json leaves it out
    by_label = await pipectl("application", "list", "--label", "env:prd")
    assert [a["name"] for a in by_label.json()["applications"]] == ["account-prd"]

    # The CI step, unchanged: exit 0 once the deployment is DEPLOYMENT_SUCCESS.
    deployed = await pipectl.script("ci-deploy.sh", APP_ID=app["id"])
    assert deployed.code == 0, deployed.err
    assert "Successfully triggered deployment " in deployed.err
    assert "Deployment is at DEPLOYMENT_SUCCESS status" in deployed.err
    assert deployed.out.strip() == "deployed; running the end-to-end tests"
    deployment_id = deployed.err.split("Successfully triggered deployment ")[1].split()[0]
    assert sandbox.api_client().get_deployment(deployment_id)["status"] == "SUCCESS"

    # Waiting for a status a finished deployment can no longer reach fails at once.
    unreachable = await pipectl(
        "deployment", "wait-status", "--deployment-id", deployment_id,
        "--status", "DEPLOYMENT_FAILURE", "--status", "DEPLOYMENT_CANCELLED",
    )  # fmt: skip
    assert unreachable.code == 1
    assert "ended DEPLOYMENT_SUCCESS" in unreachable.err
    # Far below wait-status's 900 s default timeout; not tighter: a CLI start on a loaded
    # machine (2 cores, xdist workers) alone took 10.5 s once.
    assert unreachable.seconds < 60
    reached = await pipectl(
        "deployment", "wait-status", "--deployment-id", deployment_id,
        "--status", "DEPLOYMENT_SUCCESS",
    )  # fmt: skip
    assert (reached.code, reached.err.splitlines()[-1]) == (
        0,
        "INFO\tDeployment is at DEPLOYMENT_SUCCESS status",
    )
    missing = await pipectl(
        "deployment", "wait-status", "--deployment-id", "no-such", "--status", "DEPLOYMENT_SUCCESS"
    )
    assert missing.code == 1 and '"no-such" not found' in missing.err
    bad_status = await pipectl(
        "application", "sync", "--app-id", app["id"], "--wait-status", "SUCCESS"
    )
    assert bad_status.code == 1 and "invalid status SUCCESS" in bad_status.err

    got = await pipectl("application", "get", "--app-id", app["id"])
    assert got.code == 0, got.err
    assert got.json()["most_recently_triggered_deployment"]["deployment_id"] == deployment_id

    # disable: a sync is refused (exit 1) until enable.
    disabled = await pipectl("application", "disable", "--app-id", app["id"])
    assert disabled.code == 0 and f"application id = {app['id']}" in disabled.err
    refused = await pipectl("application", "sync", "--app-id", app["id"])
    assert refused.code == 1 and "failed to sync application" in refused.err
    assert (await pipectl("application", "enable", "--app-id", app["id"])).code == 0

    # A usage error exits 1, as cobra's do (never argparse's 2).
    usage = await pipectl("application", "sync")
    assert usage.code == 1 and "--app-id" in usage.err


async def test_plan_preview_event_register_and_delete_take_pipectls_flags(
    sandbox: Sandbox, pipectl: Pipectl, registered: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """plan-preview prints pipectl's layout and --out JSON; event register and delete answer."""
    repo = sandbox.repo
    base, head = await asyncio.to_thread(pull_request_branch, repo)
    out = tmp_path / "preview.json"
    preview = await pipectl(
        "plan-preview", "--repo-remote-url", repo.url, "--base-branch", "main",
        "--head-branch", "bump", "--head-commit", head, "--out", str(out),
        "--sort-label-keys", "env",
    )  # fmt: skip
    assert preview.code == 0, preview.err
    assert preview.out.startswith("\nHere are plan-preview for 1 application:\n")
    assert ", env: prd, kind: KUBERNETES\n  sync strategy: PIPELINE\n" in preview.out
    assert "---DETAILS_BEGIN---" in preview.out and "v2" in preview.out
    [written] = json.loads(out.read_text())["Applications"]
    assert (written["Env"], written["SyncStrategy"], written["NoChange"]) == (
        "prd",
        "PIPELINE",
        False,
    )
    none = await pipectl(
        "plan-preview", "--repo-remote-url", repo.url, "--base-branch", "main",
        "--head-branch", "main", "--head-commit", base,
    )  # fmt: skip
    assert none.code == 0, none.err
    assert "There are no updated applications." in none.out

    # event register: through the API's registerEvent route (the event watcher's).
    event = await pipectl(
        "event", "register", "--name", "image-update", "--data", "v2", "--labels", "app=account",
        "--commit-hash", "1a2b3c4d", "--commit-title", "bump",
    )  # fmt: skip
    assert event.code == 0, event.err
    assert "Successfully registered event" in event.err
    assert "--commit-title: not kept" in event.err
    listed = sandbox.api_client().request("GET", "/event-watcher/events")
    assert [(e["name"], e["data"], e["labels"]) for e in listed["items"]] == [
        ("image-update", "v2", {"app": "account"})
    ]
    bad_context = await pipectl(
        "event", "register", "--name", "n", "--data", "d", "--contexts", "bad key=x"
    )
    assert bad_context.code == 1 and "invalid format key 'bad key'" in bad_context.err

    # Registering a taken name fails the script (exit 1); after a delete it registers again.
    taken = await pipectl.script("register-apps.sh", "prd")
    assert taken.code == 1 and "failed to add application" in taken.err
    app_id = registered["account-prd"]["id"]
    deleted = await pipectl("application", "delete", "--app-id", app_id)
    assert deleted.code == 0 and f"Successfully deleted application id = {app_id}" in deleted.err
    again = await pipectl("application", "delete", "--app-id", app_id)
    assert again.code == 1 and "failed to delete application" in again.err
    anew = await pipectl.script("register-apps.sh", "prd")
    assert anew.code == 0, anew.err
