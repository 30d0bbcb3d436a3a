"""`POST /plan-preview` over HTTP, and `slipway plan-preview --repository-id` through it.

Against a real git repository in the seed's layout; the CLI runs as a subprocess
(in a thread, so the API keeps serving in the test's event loop).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.api.deps import PlanPreviewSource
from services.api.routes import API_PREFIX
from shared.eventlog import EventStore
from shared.git import GitCache
from tests.support.api import api_key_for, auth_headers, served_api
from tests.support.cli import plan_preview
from tests.support.git_helpers import WorkRepo
from tests.support.seed_repo import image_bump, seed_files

PREVIEW = f"{API_PREFIX}/plan-preview"


@pytest.fixture
def work(tmp_path: Path) -> WorkRepo:
    repo = WorkRepo(tmp_path / "config")
    repo.commit({**seed_files("account"), **seed_files("payment")}, "initial")
    return repo


@pytest.fixture
async def api(
    store: EventStore, api_pool: asyncpg.Pool, work: WorkRepo, tmp_path: Path
) -> AsyncIterator[str]:
    source = PlanPreviewSource(
        repositories={"config": (work.path.resolve().as_uri(), "main")},
        cache=GitCache(tmp_path / "cache"),
    )
    async with served_api(store, api_pool, plan_preview=source) as url:
        yield url


async def post(url: str, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(base_url=url, headers=auth_headers(api_key_for(url))) as http,
        http.post(PREVIEW, json=body) as reply,
    ):
        return reply.status, await reply.json()


async def test_a_branch_bumping_an_image_previews_its_applications(
    api: str, work: WorkRepo
) -> None:
    """The preview plans prd's pipeline and dev's quick sync for account, nothing of payment."""
    work.checkout_new_branch("bump")
    work.commit(
        {**image_bump("account", "dev", "v2"), **image_bump("account", "prd", "v2")}, "account v2"
    )
    status, preview = await post(api, {"repository_id": "config", "head_branch": "bump"})
    assert status == 200, preview
    assert preview["base"]["branch"] == "main" and preview["failures"] == []
    plans = {r["application"]: r for r in preview["results"]}
    assert sorted(plans) == ["account-dev", "account-prd"]
    assert plans["account-prd"]["strategy"] == "pipeline"
    assert plans["account-dev"]["strategy"] == "quick_sync"
    assert "image account: v1 → v2" in plans["account-prd"]["summary"]


async def test_refusals_name_what_is_wrong(
    api: str, store: EventStore, api_pool: asyncpg.Pool
) -> None:
    """Unknown repository 404, a missing branch or both heads 400, no control config 503."""
    status, body = await post(api, {"repository_id": "nope", "head_branch": "x"})
    assert status == 404 and "config" in body["error"]["message"]
    status, body = await post(api, {"repository_id": "config", "head_branch": "missing"})
    assert status == 400 and "missing" in body["error"]["message"]
    status, body = await post(
        api, {"repository_id": "config", "head_branch": "a", "head_commit": "abcdef1"}
    )
    assert status == 400 and body["error"]["field"] == "head_branch"
    status, body = await post(api, {"repository_id": "config", "head_branch": "--upload-pack=x"})
    assert status == 400 and body["error"]["field"] == "head_branch"
    async with served_api(store, api_pool, admin_name="test-admin-bare") as bare:
        status, body = await post(bare, {"repository_id": "config", "head_branch": "main"})
        assert status == 503 and "SLIPWAY_CONTROL_CONFIG" in body["error"]["message"]


async def cli(url: str, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    """`slipway plan-preview ARGS` against the API at `url` (with its admin key by default)."""
    env = {"SLIPWAY_API_URL": url, "SLIPWAY_API_KEY": key or api_key_for(url)}
    return await asyncio.to_thread(plan_preview, *args, env=env)


async def test_cli_over_the_api_prints_what_it_prints_locally(api: str, work: WorkRepo) -> None:
    """`--repository-id` gives the same text, JSON and exit code as `--repo` on a clone."""
    work.checkout_new_branch("bump")
    work.commit(
        {
            **image_bump("account", "dev", "v2"),
            "payment/dev/.pipe.yaml": "apiVersion: pipecd.dev/v1beta1\nkind: Nope\n",
        },
        "account v2, payment broken",
    )
    head = ("--base-branch", "main", "--head-branch", "bump")
    for output in ((), ("--json",)):
        local = await asyncio.to_thread(plan_preview, "--repo", str(work.path), *head, *output)
        remote = await cli(api, "--repository-id", "config", *head, *output)
        assert (remote.returncode, remote.stdout) == (local.returncode, local.stdout), remote.stderr
        assert remote.returncode == 1  # payment-dev cannot be planned
    text = (await cli(api, "--repository-id", "config", "--head-branch", "bump")).stdout
    assert "1. application: account-dev (account/dev/.pipe.yaml)" in text
    assert "summary: image account: v1 → v2" in text  # the base defaulted to `main`
    assert "NOTE: 1 application could not be planned:" in text
    data = json.loads(remote.stdout)
    assert [r["application"] for r in data["results"]] == ["account-dev"]
    assert data["results"][0]["details"].startswith("# 1. Deployment ")


@pytest.mark.usefixtures("work")
async def test_cli_over_the_api_exit_codes(api: str) -> None:
    """Missing branch or unknown repository 2, no API 3, a key without rights 1; each says why."""
    done = await cli(api, "--repository-id", "config", "--head-branch", "missing")
    assert done.returncode == 2
    assert "head branch 'missing' does not exist" in done.stderr
    done = await cli(api, "--repository-id", "nope", "--head-branch", "main")
    assert done.returncode == 2 and "no repository 'nope'" in done.stderr
    done = await cli(api, "--repository-id", "config", "--head-branch", "main", key="sk_wrong")
    assert done.returncode == 1 and "HTTP 401" in done.stderr
    done = await cli(
        "http://127.0.0.1:9", "--repository-id", "config", "--head-branch", "main", key="sk_any"
    )
    assert (
        done.returncode == 3 and "cannot reach the Slipway API at http://127.0.0.1:9" in done.stderr
    )


async def test_cli_over_the_api_when_the_repository_cannot_be_fetched(
    store: EventStore, api_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A repository the API cannot fetch exits 3, as it does locally, naming it."""
    source = PlanPreviewSource(
        repositories={"gone": ("http://127.0.0.1:9/nothing.git", "main")},
        cache=GitCache(tmp_path / "cache"),
    )
    async with served_api(store, api_pool, plan_preview=source) as url:
        done = await cli(url, "--repository-id", "gone", "--head-branch", "x")
    assert done.returncode == 3
    assert "cannot fetch http://127.0.0.1:9/nothing.git" in done.stderr
