"""`POST /plan-preview` over HTTP, against a real git repository in the seed's layout."""

from __future__ import annotations

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
from tests.api_support import api_key_for, auth_headers, served_api
from tests.git_helpers import WorkRepo
from tests.seed_repo import image_bump, seed_files

PREVIEW = f"{API_PREFIX}/plan-preview"


@pytest.fixture
def work(tmp_path: Path) -> WorkRepo:
    repo = WorkRepo(tmp_path / "config")
    repo.commit({**seed_files("account"), **seed_files("payment")}, "initial")
    return repo


@pytest.fixture
async def api(
    store: EventStore, pool: asyncpg.Pool, work: WorkRepo, tmp_path: Path
) -> AsyncIterator[str]:
    source = PlanPreviewSource(
        repositories={"config": (work.path.resolve().as_uri(), "main")},
        cache=GitCache(tmp_path / "cache"),
    )
    async with served_api(store, pool, plan_preview=source) as url:
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


async def test_refusals_name_what_is_wrong(api: str, store: EventStore, pool: asyncpg.Pool) -> None:
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
    async with served_api(store, pool) as bare:
        status, body = await post(bare, {"repository_id": "config", "head_branch": "main"})
        assert status == 503 and "SLIPWAY_CONTROL_CONFIG" in body["error"]["message"]
