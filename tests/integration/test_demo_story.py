"""The demo's pieces on their own: the story's judge and fold, the receiver, the config repo."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.config import load_application_config, load_control_config
from shared.events import vocabulary
from shared.events.catalog import (
    ChainBlock,
    ChainBlockStarted,
    ChainCompleted,
    ChainDeploymentFinished,
    ChainNode,
    ChainStarted,
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentRollingBack,
    DeploymentStarted,
    DeploymentTriggered,
    PlannedStage,
    StageCompleted,
    StageStarted,
)
from slipway_sandbox.control import ControlInputs, write_control_config
from slipway_sandbox.demo_repo import DemoRepo, DemoTiming, image, image_bump, initial_files
from slipway_sandbox.receiver import SlackReceiver, message_lines
from slipway_sandbox.story import (
    CORE_SERVICES,
    EVENT_TAG,
    ChainedDeployment,
    ChainOutcome,
    DeploymentOutcome,
    Observed,
    StageOutcome,
    judge,
    playable,
    seed_story,
)
from slipway_sandbox.story_outcomes import fold_chain, fold_deployment

NOW = datetime(2026, 1, 2, tzinfo=UTC)
STORY = seed_story(DemoTiming())


def _stage(index: int, name: str) -> PlannedStage:
    return PlannedStage(
        id=f"s{index}", name=vocabulary.StageName(name), index=index, visible=name != "ROLLBACK"
    )


def test_fold_follows_a_failed_canary_through_its_rollback() -> None:
    """A deployment's events fold into its status, strategy, stage outcomes and rollback."""
    names = ["K8S_CANARY_ROLLOUT", "ANALYSIS", "K8S_PRIMARY_ROLLOUT", "ROLLBACK"]
    events = [
        DeploymentTriggered(
            deployment_id="d",
            application_id="a",
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash="c3",
        ),
        DeploymentPlanned(
            deployment_id="d",
            application_id="a",
            commit_hash="c3",
            strategy=vocabulary.Strategy("pipeline"),
            summary="",
            reason="",
            stages=tuple(_stage(i, n) for i, n in enumerate(names)),
        ),
        DeploymentStarted(deployment_id="d", application_id="a", started_at=NOW),
        StageStarted(deployment_id="d", stage_id="s0", started_at=NOW),
        StageCompleted(deployment_id="d", stage_id="s0", status=vocabulary.StageStatus("SUCCESS")),
        StageStarted(deployment_id="d", stage_id="s1", started_at=NOW),
        StageCompleted(
            deployment_id="d",
            stage_id="s1",
            status=vocabulary.StageStatus("FAILURE"),
            reason="5 % errors",
        ),
        DeploymentRollingBack(deployment_id="d", application_id="a"),
        StageStarted(deployment_id="d", stage_id="s3", started_at=NOW),
    ]
    running = fold_deployment("d", events)
    assert (running.status, running.strategy, running.rolled_back) == (
        "ROLLING_BACK",
        "pipeline",
        True,
    )
    assert running.stages[-1] == StageOutcome("ROLLBACK", "RUNNING")
    done = fold_deployment(
        "d",
        [
            *events,
            StageCompleted(
                deployment_id="d", stage_id="s3", status=vocabulary.StageStatus("SUCCESS")
            ),
            DeploymentCompleted(
                deployment_id="d",
                application_id="a",
                status=vocabulary.DeploymentStatus("FAILURE"),
                reason="analysis failed",
            ),
        ],
    )
    assert done.status == "FAILURE" and done.reason == "analysis failed"
    assert [s.name for s in done.stages] == ["K8S_CANARY_ROLLOUT", "ANALYSIS", "ROLLBACK"]
    assert done.stages[1] == StageOutcome("ANALYSIS", "FAILURE", "5 % errors")


def _bad_outcome(**changes: object) -> DeploymentOutcome:
    fields: dict[str, object] = {
        "deployment_id": "d3",
        "status": "FAILURE",
        "strategy": "pipeline",
        "stages": (
            StageOutcome("K8S_CANARY_ROLLOUT", "SUCCESS"),
            StageOutcome("ANALYSIS", "FAILURE"),
            StageOutcome("ROLLBACK", "SUCCESS"),
        ),
        "rolled_back": True,
    } | changes
    return DeploymentOutcome(**fields)  # type: ignore[arg-type]


def test_judge_accepts_the_bad_step_only_with_rollback_and_a_slack_message() -> None:
    """The bad-image step passes when it failed, rolled back, runs v2 and Slack was told."""
    step = STORY.step("bad")
    good = Observed(
        deployment=_bad_outcome(),
        live_image=image("v2"),
        live_deployment_id="d3",
        canary_left=False,
        messages=(("Deployment of account-prd failed", "reason: analysis"),),
    )
    assert judge(step, good).ok
    no_message = judge(step, replace(good, messages=()))
    assert no_message.problems == ("the Slack receiver got no message about account-prd",)
    no_rollback = judge(
        step,
        replace(
            good,
            deployment=_bad_outcome(
                rolled_back=False, stages=(StageOutcome("ANALYSIS", "FAILURE"),)
            ),
        ),
    )
    assert "it did not roll back" in no_rollback.problems
    assert "the ROLLBACK stage is absent, expected SUCCESS" in no_rollback.problems
    still_bad = judge(step, replace(good, live_image=image("v3"), canary_left=True))
    assert len(still_bad.problems) == 2
    without_notifier = judge(step, replace(good, messages=(), notifier_present=False))
    assert without_notifier.ok and without_notifier.notes


def test_judge_names_the_wrong_status_strategy_and_stages() -> None:
    """A prd deploy that quick-synced, or failed, is told apart from the expected pipeline."""
    step = STORY.step("prd")
    quick = DeploymentOutcome(
        deployment_id="d2",
        status="FAILURE",
        strategy="quick_sync",
        stages=(StageOutcome("K8S_SYNC", "FAILURE"),),
        reason="boom",
    )
    verdict = judge(
        step,
        Observed(
            deployment=quick, live_image=image("v1"), live_deployment_id="d1", canary_left=False
        ),
    )
    assert verdict.problems[0] == "status FAILURE, expected SUCCESS (boom)"
    assert "strategy quick_sync, expected pipeline" in verdict.problems
    assert any(p.startswith("stages ['K8S_SYNC']") for p in verdict.problems)
    assert any("not by this step's d2" in p for p in verdict.problems)
    nothing = judge(
        step, Observed(deployment=None, live_image=None, live_deployment_id=None, canary_left=False)
    )
    assert nothing.problems == ("no deployment of account-prd was triggered",)


def test_steps_needing_absent_services_are_skipped_with_a_reason() -> None:
    """Without analysis, the bad-image step is skipped, and so is the revert of it."""
    present = CORE_SERVICES
    assert playable(STORY.step("dev"), present, frozenset()) is None
    assert playable(STORY.step("bad"), present, frozenset()) == (
        "needs analysis, not in this checkout"
    )
    assert "which was not played" in str(
        playable(STORY.step("revert"), present | {"analysis"}, frozenset({"bad"}))
    )


def test_demo_repository_loads_and_reverts(tmp_path: Path) -> None:
    """The generated repository's configs load, and a revert restores the earlier manifests."""
    timing = DemoTiming(analysis_s=20)
    repo = DemoRepo(tmp_path / "repo")
    repo.create(initial_files(timing, tag="v1"), "v1")
    pipeline = load_application_config(repo.path / "account/prd/.pipe.yaml").spec.pipeline
    assert pipeline is not None
    assert [s.name for s in pipeline.stages][:2] == ["K8S_CANARY_ROLLOUT", "ANALYSIS"]
    assert load_application_config(repo.path / "account/dev/.pipe.yaml").spec.pipeline is None
    before = (repo.path / "account/prd/manifests.yaml").read_text()
    bad = repo.commit(image_bump("prd", "v3", timing), "v3")
    assert image("v3") in (repo.path / "account/prd/manifests.yaml").read_text()
    repo.revert(bad)
    assert (repo.path / "account/prd/manifests.yaml").read_text() == before
    assert repo.subject(repo.head()).startswith('Revert "v3"')


def test_the_event_watcher_variant_chains_dev_to_stg(tmp_path: Path) -> None:
    """With the event-watcher step, dev watches image events for itself and stg and chains
    stg, which only a chain deploys; the default repository has neither."""
    repo = DemoRepo(tmp_path / "repo")
    repo.create(initial_files(DemoTiming(), tag="v1", event_watcher=True), "v1")
    dev = load_application_config(repo.path / "account/dev/.pipe.yaml").spec
    stg = load_application_config(repo.path / "account/stg/.pipe.yaml").spec
    assert [r.file for r in dev.event_watcher[0].handler.config.replacements] == [
        "manifests.yaml",
        "../stg/manifests.yaml",
    ]
    assert dev.post_sync is not None and dev.post_sync.chain is not None
    assert [m.name for m in dev.post_sync.chain.applications] == ["account-stg"]
    assert stg.trigger.on_commit.disabled and not stg.trigger.on_chain.disabled
    assert (repo.path / "account/stg/manifests.yaml").is_file()
    plain = initial_files(DemoTiming(), tag="v1")
    assert "account/stg/manifests.yaml" not in plain
    assert "postSync" not in plain["account/dev/.pipe.yaml"]


def _chain_events(
    *finished: str,
) -> list[ChainStarted | ChainBlockStarted | ChainDeploymentFinished]:
    blocks = (
        ChainBlock(index=0, nodes=(ChainNode(application_id="id-dev", deployment_id="d-dev"),)),
        ChainBlock(index=1, nodes=(ChainNode(application_id="id-stg", deployment_id="d-stg"),)),
    )
    events: list[ChainStarted | ChainBlockStarted | ChainDeploymentFinished] = [
        ChainStarted(
            chain_id="c1",
            origin_deployment_id="d-dev",
            origin_application_id="id-dev",
            blocks=blocks,
        ),
        ChainBlockStarted(chain_id="c1", index=1),
    ]
    events += [
        ChainDeploymentFinished(
            chain_id="c1", deployment_id="d-stg", status=vocabulary.DeploymentStatus(status)
        )
        for status in finished
    ]
    return events


def test_the_image_event_step_is_judged_on_its_chain_too() -> None:
    """The step passes only when dev's chain deployed stg, ended SUCCESS, and stg runs the
    event's image applied by the chain's deployment."""
    story = seed_story(DemoTiming(), with_event_watcher=True)
    assert story.step("bootstrap").actions[0].apps == (  # type: ignore[union-attr]
        "account-dev",
        "account-stg",
        "account-prd",
    )
    step = story.step("image-event")
    names = {"id-dev": "account-dev", "id-stg": "account-stg"}
    assert fold_chain([], names) is None
    running = fold_chain(_chain_events(), names)
    assert running is not None and running.status == "RUNNING"
    assert running.deployments == (ChainedDeployment(1, "account-stg", "d-stg", ""),)
    done = fold_chain(
        [
            *_chain_events("SUCCESS"),
            ChainCompleted(chain_id="c1", status=vocabulary.DeploymentStatus("SUCCESS")),
        ],
        names,
    )
    assert done is not None and done.status == "SUCCESS"
    live = replace(
        done,
        deployments=tuple(
            replace(d, live_image=image(EVENT_TAG), live_deployment_id="d-stg")
            for d in done.deployments
        ),
    )
    dev = DeploymentOutcome(
        deployment_id="d-dev",
        status="SUCCESS",
        strategy="quick_sync",
        stages=(StageOutcome("K8S_SYNC", "SUCCESS"),),
    )
    good = Observed(
        deployment=dev,
        live_image=image(EVENT_TAG),
        live_deployment_id="d-dev",
        canary_left=False,
        chain=live,
    )
    assert judge(step, good).ok
    assert judge(step, replace(good, chain=None)).problems == (
        "account-dev's deployment started no chain (postSync.chain)",
    )
    failed = replace(
        live,
        status="FAILURE",
        reason="block 1 failed",
        deployments=(replace(live.deployments[0], status="FAILURE", live_image=image("v1")),),
    )
    assert judge(step, replace(good, chain=failed)).problems == (
        "the chain is FAILURE, expected SUCCESS (block 1 failed)",
        "the chain's deployment of account-stg is FAILURE",
        f"kubesim runs {image('v1')} for account-stg, expected {image(EVENT_TAG)}",
    )
    empty = ChainOutcome(chain_id="c1", status="SUCCESS")
    assert judge(step, replace(good, chain=empty)).problems == (
        "the chain deployed [], expected ['account-stg']",
    )


def test_control_config_points_at_the_sandbox(tmp_path: Path) -> None:
    """slipway.yaml names the repo, kubesim, Prometheus and a Slack route for failures."""
    path = write_control_config(
        tmp_path / "slipway.yaml",
        ControlInputs(
            repository_url="file:///repo",
            kubeconfig=tmp_path / "kc",
            prometheus_url="http://127.0.0.1:9",
            slack_url="http://127.0.0.1:8/slack",
        ),
    )
    spec = load_control_config(path).spec
    assert spec.repositories[0].poll_interval.seconds == 1
    assert spec.platform_providers[0].config.kubeconfig_path == str(tmp_path / "kc")
    assert spec.analysis_providers[0].config.address == "http://127.0.0.1:9"
    route = spec.notifications.routes[0]
    assert "DEPLOYMENT_FAILED" in route.events
    assert spec.notifications.receivers[0].slack is not None


def test_message_lines_read_block_kit() -> None:
    """A Block Kit message reads as its text, then each block's text and fields."""
    message = {
        "text": "account-prd: deployment failed",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Deployment failed"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*App* account-prd"}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "commit abc"}]},
        ],
    }
    assert message_lines(message) == [
        "account-prd: deployment failed",
        "Deployment failed",
        "*App* account-prd",
        "commit abc",
    ]


@pytest.mark.asyncio
async def test_receiver_keeps_and_shows_each_message() -> None:
    """The local receiver answers ok, keeps the message and hands it to its callback."""
    shown: list[dict[str, object]] = []
    receiver = await SlackReceiver(shown.append).start()
    try:
        body = json.dumps({"text": "hello account-prd"}).encode()
        request = urllib.request.Request(receiver.url, data=body, method="POST")

        def post() -> bytes:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return bytes(reply.read())

        assert await asyncio.to_thread(post) == b"ok"
        assert await receiver.wait_for(lambda ms: len(ms) == 1, within=5)
        assert shown == [{"text": "hello account-prd"}]
    finally:
        await receiver.stop()
