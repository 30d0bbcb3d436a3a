"""The seed's config repository, in real git: what a CI image bump plans to in dev and in prd."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from shared.config import StageOptions, dec_hook
from shared.deploysource import ensure_commit, load_deploy_source
from shared.errors import ConfigError
from shared.git import GitCache, GitError
from shared.planning import Rule, Strategy, TriggerInfo, make_plan
from tests.support.git_helpers import WorkRepo
from tests.support.seed_repo import image_bump, seed_files


@pytest.fixture
def work(tmp_path: Path) -> WorkRepo:
    return WorkRepo(tmp_path / "config")


@pytest.fixture
def cache(tmp_path: Path) -> GitCache:
    return GitCache(tmp_path / "cache")


async def test_image_bump_in_prd_runs_the_pipeline_and_in_dev_quick_syncs(
    work: WorkRepo, cache: GitCache
) -> None:
    """The same image bump plans prd's canary pipeline (`image account: v1 → v2`), dev's sync."""
    base = work.commit(seed_files("account"), "initial")
    head = work.commit(
        {**image_bump("account", "dev", "v2"), **image_bump("account", "prd", "v2")},
        "account: v2",
    )
    repo = cache.repository(work.url)
    await ensure_commit(repo, head)

    plans = {}
    for env in ("dev", "prd"):
        new = await load_deploy_source(repo, head, f"account/{env}", ".pipe.yaml")
        old = await load_deploy_source(repo, base, f"account/{env}", ".pipe.yaml")
        plans[env] = make_plan(
            new.spec,
            TriggerInfo(commit_message="account: v2"),
            new.manifests,
            old.manifests,
            running_commit=base,
        )

    prd = plans["prd"]
    assert prd.decision.strategy is Strategy.PIPELINE
    assert prd.decision.rule is Rule.POD_TEMPLATE_CHANGED
    assert prd.decision.summary == "image account: v1 → v2"
    assert [(s.id, s.name, s.visible) for s in prd.stages] == [
        ("stage-0", "K8S_CANARY_ROLLOUT", True),
        ("analysis", "ANALYSIS", True),
        ("stage-2", "K8S_PRIMARY_ROLLOUT", True),
        ("stage-3", "K8S_CANARY_CLEAN", True),
        ("Rollback", "ROLLBACK", False),
    ]
    analysis = json.loads(prd.stages[1].options_json)
    assert analysis["duration"] == "30m0s"
    assert analysis["metrics"][0]["template"]["name"] == "grpc_error_rate"

    dev = plans["dev"]
    assert (dev.decision.strategy, dev.decision.rule) == (Strategy.QUICK_SYNC, Rule.NO_PIPELINE)
    assert dev.decision.summary == "image account: v1 → v2"
    assert [s.name for s in dev.stages] == ["K8S_SYNC", "ROLLBACK"]


async def test_stage_options_decode_back_into_the_config_types(
    work: WorkRepo, cache: GitCache
) -> None:
    """`options_json` decodes straight into the loader's options type of the stage."""
    head = work.commit(seed_files("account"), "initial")
    repo = cache.repository(work.url)
    await ensure_commit(repo, head)
    source = await load_deploy_source(repo, head, "account/prd", ".pipe.yaml")
    plan = make_plan(source.spec, TriggerInfo(strategy="pipeline"), source.manifests)
    canary = msgspec.json.decode(
        plan.stages[0].options_json.encode(), type=StageOptions, dec_hook=dec_hook
    )
    assert str(canary.replicas) == "10%"  # type: ignore[attr-defined]


async def test_broken_config_is_a_config_error_naming_the_repository_path_and_line(
    work: WorkRepo, cache: GitCache
) -> None:
    """A config error names the file relative to the repository, with its line."""
    head = work.commit(
        {
            **seed_files("account"),
            "account/prd/.pipe.yaml": seed_files("account")["account/prd/.pipe.yaml"].replace(
                "K8S_PRIMARY_ROLLOUT", "K8S_PRIMARY_ROLLOUTT"
            ),
        },
        "typo",
    )
    repo = cache.repository(work.url)
    await ensure_commit(repo, head)
    with pytest.raises(ConfigError) as raised:
        await load_deploy_source(repo, head, "account/prd", ".pipe.yaml")
    message = str(raised.value)
    assert message.startswith("account/prd/.pipe.yaml:19:9: spec.pipeline.stages[2].name")
    assert "K8S_PRIMARY_ROLLOUTT" in message
    assert "slipway-checkout" not in message


async def test_a_commit_the_remote_does_not_have_is_not_found(
    work: WorkRepo, cache: GitCache
) -> None:
    """Asking for a commit that is nowhere fetches once, then says `not_found`."""
    work.commit(seed_files("account"), "initial")
    repo = cache.repository(work.url)
    with pytest.raises(GitError) as raised:
        await ensure_commit(repo, "0123456789abcdef0123456789abcdef01234567")
    assert raised.value.kind == "not_found"
