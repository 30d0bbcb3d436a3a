"""The pure notification core: event → type, facts, messages, Block Kit, signatures, back-off."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from msgspec.structs import replace as msgspec_replace

from services.notifier.notify.catalog import (
    GROUP_OF,
    SOURCES,
    NotificationGroup,
    NotificationType,
    notification_type_of,
    notification_types_of,
)
from services.notifier.notify.facts import AppFacts, fold_application, fold_deployment
from services.notifier.notify.message import NO_MENTIONS, Mentions, Message, compose, mentions_for
from services.notifier.notify.retry import RetryPolicy, is_retryable_status
from services.notifier.notify.slack import mention_text, slack_payload
from services.notifier.notify.webhook import request_headers, sign, verify, webhook_body
from shared.config.control import SlackMention, SlackReceiver
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationRegistered,
    ApplicationSyncStateChanged,
    ChainCompleted,
    CommitObserved,
    DeploymentCancelRequested,
    DeploymentCompleted,
    DeploymentPlanFailed,
    DeploymentPlanned,
    DeploymentRollingBack,
    DeploymentStarted,
    DeploymentTriggered,
    PlannedStage,
    ServiceStarted,
    ServiceStopped,
    StageApproved,
    StageCompleted,
    StageStarted,
)

T = NotificationType
NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
D = "dep1"
A = "app1"


def stage(i: int, name: str) -> PlannedStage:
    return PlannedStage(id=f"stage-{i}", name=vocabulary.StageName(name), index=i)


TRIGGERED = DeploymentTriggered(
    deployment_id=D,
    application_id=A,
    trigger=vocabulary.Trigger("on_commit"),
    commit_hash="0123456789abcdef",
    commit_message="Bump image to v2\n\nlong body",
    commit_author="alice",
)
PLANNED = DeploymentPlanned(
    deployment_id=D,
    application_id=A,
    commit_hash="0123456789abcdef",
    strategy=vocabulary.Strategy("pipeline"),
    summary="image web: v1 → v2",
    reason="pod template changed",
    stages=(stage(0, "K8S_CANARY_ROLLOUT"), stage(1, "WAIT_APPROVAL"), stage(2, "ROLLBACK")),
)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (TRIGGERED, T.DEPLOYMENT_TRIGGERED),
        (PLANNED, T.DEPLOYMENT_PLANNED),
        (StageApproved(deployment_id=D, stage_id="stage-1", approver="bob"), T.DEPLOYMENT_APPROVED),
        (DeploymentRollingBack(deployment_id=D, application_id=A), T.DEPLOYMENT_ROLLING_BACK),
        (
            DeploymentCompleted(
                deployment_id=D, application_id=A, status=vocabulary.DeploymentStatus("SUCCESS")
            ),
            T.DEPLOYMENT_SUCCEEDED,
        ),
        (
            DeploymentCompleted(
                deployment_id=D, application_id=A, status=vocabulary.DeploymentStatus("FAILURE")
            ),
            T.DEPLOYMENT_FAILED,
        ),
        (
            DeploymentCompleted(
                deployment_id=D, application_id=A, status=vocabulary.DeploymentStatus("CANCELLED")
            ),
            T.DEPLOYMENT_CANCELLED,
        ),
        (
            StageStarted(deployment_id=D, stage_id="s", started_at=NOW, name="WAIT_APPROVAL"),
            T.DEPLOYMENT_WAIT_APPROVAL,
        ),
        (
            DeploymentPlanFailed(deployment_id=D, application_id=A, reason="bad yaml"),
            T.DEPLOYMENT_TRIGGER_FAILED,
        ),
        (
            ApplicationSyncStateChanged(
                application_id=A, state=vocabulary.SyncState("SYNCED"), summary="ok"
            ),
            T.APPLICATION_SYNCED,
        ),
        (
            ApplicationSyncStateChanged(
                application_id=A, state=vocabulary.SyncState("OUT_OF_SYNC"), summary="x"
            ),
            T.APPLICATION_OUT_OF_SYNC,
        ),
        (StageStarted(deployment_id=D, stage_id="s", started_at=NOW, name="WAIT"), T.STAGE_STARTED),
        (
            DeploymentStarted(deployment_id=D, application_id=A, started_at=NOW),
            T.DEPLOYMENT_STARTED,
        ),
        *(
            (
                StageCompleted(
                    deployment_id=D, stage_id="s", status=vocabulary.StageStatus(status)
                ),
                expected,
            )
            for status, expected in (
                ("SUCCESS", T.STAGE_SUCCEEDED),
                ("FAILURE", T.STAGE_FAILED),
                ("CANCELLED", T.STAGE_CANCELLED),
                ("SKIPPED", T.STAGE_SKIPPED),
                ("EXITED", None),
            )
        ),
        (CommitObserved(repository_id="r", branch="main", commit_hash="c"), None),
    ],
)
def test_event_to_notification_type(event: Event, expected: NotificationType | None) -> None:
    """Each Slipway event makes the PipeCD notification type the catalog says, or none."""
    assert notification_type_of(event) == expected


def test_a_failed_plan_is_a_failed_deployment_too() -> None:
    """A plan failure makes DEPLOYMENT_TRIGGER_FAILED (most specific, first) and
    DEPLOYMENT_FAILED, whose message says the deployment failed, with the plan error."""
    failed = DeploymentPlanFailed(deployment_id=D, application_id=A, reason="x.yaml:1:1: bad")
    assert notification_types_of(failed) == (T.DEPLOYMENT_TRIGGER_FAILED, T.DEPLOYMENT_FAILED)
    assert notification_types_of(PLANNED) == (T.DEPLOYMENT_PLANNED,)
    approval = StageStarted(deployment_id=D, stage_id="s", started_at=NOW, name="WAIT_APPROVAL")
    assert notification_types_of(approval) == (T.DEPLOYMENT_WAIT_APPROVAL, T.STAGE_STARTED)
    assert (
        notification_types_of(CommitObserved(repository_id="r", branch="b", commit_hash="c")) == ()
    )
    message = compose(
        notification_id="n",
        type_=T.DEPLOYMENT_FAILED,
        event=failed,
        event_id="e",
        event_type="deployment_plan_failed",
        occurred_at=NOW,
        application=None,
        deployment=fold_deployment(D, [TRIGGERED, failed]),
    )
    assert (message.title, message.text, message.reason, message.severity) == (
        f'Deployment for "{A}" failed',
        "x.yaml:1:1: bad",
        "x.yaml:1:1: bad",
        "error",
    )


def test_every_pipecd_type_has_a_group_and_a_documented_source() -> None:
    """All 20 PipeCD types (incl. ROLLING_BACK, SYNCED, OUT_OF_SYNC, STAGE_*) and Slipway's
    three chain types are grouped and sourced."""
    assert len(NotificationType) == 20 + 3
    assert set(GROUP_OF) == set(SOURCES) == set(NotificationType)
    assert GROUP_OF[T.APPLICATION_OUT_OF_SYNC] is NotificationGroup.APPLICATION_SYNC
    assert GROUP_OF[T.DEPLOYMENT_ROLLING_BACK] is NotificationGroup.DEPLOYMENT
    assert GROUP_OF[T.PIPED_STOPPED] is NotificationGroup.PIPED
    assert GROUP_OF[T.STAGE_FAILED] is NotificationGroup.STAGE
    assert GROUP_OF[T.DEPLOYMENT_STARTED] is NotificationGroup.DEPLOYMENT


def test_a_failed_stage_says_which_stage_and_why() -> None:
    """STAGE_FAILED names the stage that ended and carries its reason."""
    failed = StageCompleted(
        deployment_id=D, stage_id="stage-0", status=vocabulary.StageStatus("FAILURE"), reason="oom"
    )
    started = StageStarted(deployment_id=D, stage_id="stage-0", started_at=NOW)
    message = compose(
        notification_id="n",
        type_=T.STAGE_FAILED,
        event=failed,
        event_id="e",
        event_type="stage_completed",
        occurred_at=NOW,
        application=None,
        deployment=fold_deployment(D, [TRIGGERED, PLANNED, started, failed]),
    )
    assert (message.title, message.text, message.reason, message.severity, message.group) == (
        f'Stage "K8S_CANARY_ROLLOUT" of deployment for "{A}" failed',
        "oom",
        "oom",
        "error",
        "STAGE",
    )


def test_deployment_fold_keeps_commit_stage_and_reason() -> None:
    """The deployment facts carry the commit, the stage started last and the failure reason."""
    facts = fold_deployment(
        D,
        [
            TRIGGERED,
            PLANNED,
            StageStarted(deployment_id=D, stage_id="stage-0", started_at=NOW, name=""),
            StageCompleted(
                deployment_id=D,
                stage_id="stage-0",
                status=vocabulary.StageStatus("FAILURE"),
                reason="pods crash",
            ),
            DeploymentCancelRequested(deployment_id=D, commander="carol"),
            DeploymentCompleted(
                deployment_id=D, application_id=A, status=vocabulary.DeploymentStatus("FAILURE")
            ),
        ],
    )
    assert (facts.commit_hash, facts.stage_name, facts.reason) == (
        "0123456789abcdef",
        "K8S_CANARY_ROLLOUT",
        "pods crash",
    )
    assert (facts.status, facts.cancelled_by, facts.summary) == (
        "FAILURE",
        "carol",
        PLANNED.summary,
    )


def test_application_fold_uses_the_latest_registration() -> None:
    """Name and labels come from the last ApplicationRegistered."""
    first = ApplicationRegistered(application_id=A, name="web", repository_id="r", path="p")
    second = ApplicationRegistered(
        application_id=A, name="web2", repository_id="r", path="p", labels=(("env", "prd"),)
    )
    assert fold_application([first, second]) == AppFacts(
        application_id=A, name="web2", labels=(("env", "prd"),)
    )
    assert fold_application([]) is None


def failed_message(
    web_url: str = "https://slipway.example", mentions: Mentions = NO_MENTIONS
) -> Message:
    deployment = fold_deployment(
        D,
        [
            TRIGGERED,
            PLANNED,
            StageStarted(
                deployment_id=D, stage_id="stage-0", started_at=NOW, name="K8S_CANARY_ROLLOUT"
            ),
            DeploymentCompleted(
                deployment_id=D,
                application_id=A,
                status=vocabulary.DeploymentStatus("FAILURE"),
                reason="<@here> pods crash",
            ),
        ],
    )
    event = DeploymentCompleted(
        deployment_id=D, application_id=A, status=vocabulary.DeploymentStatus("FAILURE")
    )
    return compose(
        notification_id="n1",
        type_=T.DEPLOYMENT_FAILED,
        event=event,
        event_id="e1",
        event_type="deployment_completed",
        occurred_at=NOW,
        application=AppFacts(application_id=A, name="web", labels=(("env", "prd"), ("team", "a"))),
        deployment=deployment,
        web_url=web_url,
        mentions=mentions,
    )


def test_block_kit_message_has_app_labels_commit_stage_reason_and_link() -> None:
    """The Slack payload: header, fields (application, environment, commit, stage, reason,
    deployment), mentions that ping, a button to the link; Slack markup escaped."""
    message = failed_message(mentions=Mentions(users=("U1",), groups=("S9",)))
    payload = slack_payload(message)
    blocks = payload["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": 'Deployment for "web" failed', "emoji": True},
    }
    fields = next(b["fields"] for b in blocks if "fields" in b)
    text = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in fields}
    assert text["*Application*"] == "web"
    assert text["*Environment*"] == "env: prd, team: a"
    assert text["*Commit*"] == "`01234567` Bump image to v2"
    assert text["*Stage*"] == "K8S_CANARY_ROLLOUT"
    assert text["*Reason*"] == "&lt;@here&gt; pods crash"
    assert text["*Deployment*"] == "<https://slipway.example/deployments/dep1|dep1>"
    button = next(b for b in blocks if b["type"] == "actions")["elements"][0]
    assert button["url"] == "https://slipway.example/deployments/dep1"
    assert any(b.get("text", {}).get("text") == "<@U1> <!subteam^S9>" for b in blocks)
    assert payload["text"].endswith("<@U1> <!subteam^S9>")
    assert all(len(b["fields"]) <= 10 for b in blocks if "fields" in b)
    json.dumps(payload)  # serialisable as is


def test_no_link_means_no_button() -> None:
    """Without a webAddress there is no button (Slack refuses a button without a URL)."""
    blocks = slack_payload(failed_message(web_url=""))["blocks"]
    assert not any(b["type"] == "actions" for b in blocks)


def test_mentions_per_event_add_to_the_receivers_accounts() -> None:
    """mentionedAccounts apply to every event, `mentions` only to their own event type."""
    receiver = SlackReceiver(
        hook_url="http://x",
        mentioned_accounts=("U0",),
        mentions=(
            SlackMention(event="DEPLOYMENT_FAILED", slack_users=("U1",), slack_groups=("S1",)),
            SlackMention(event="EVENT_DEPLOYMENT_FAILED", slack_users=("U0", "U2")),
            SlackMention(event="DEPLOYMENT_SUCCEEDED", slack_users=("U3",)),
        ),
    )
    failed = mentions_for(receiver, T.DEPLOYMENT_FAILED)
    assert failed == Mentions(users=("U0", "U1", "U2"), groups=("S1",))
    assert mentions_for(receiver, T.DEPLOYMENT_PLANNED) == Mentions(users=("U0",))
    assert mention_text(failed) == "<@U0> <@U1> <@U2> <!subteam^S1>"


def test_webhook_body_is_stable_and_signed_with_hmac_sha256() -> None:
    """The JSON body is the same bytes each time; the header is sha256=HMAC(secret, body),
    which verify accepts and a changed body or secret fails."""
    body = webhook_body(failed_message())
    assert body == webhook_body(failed_message())
    document = json.loads(body)
    assert (document["id"], document["type"], document["application"]["name"]) == (
        "n1",
        "DEPLOYMENT_FAILED",
        "web",
    )
    headers = request_headers(
        delivery_id="n1",
        notification_type="DEPLOYMENT_FAILED",
        body=body,
        signature_key="X-Sig",
        secret=b"s3cret",
    )
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Sig"] == expected == sign(b"s3cret", body)
    assert headers["Slipway-Delivery"] == "n1"
    assert verify(b"s3cret", body, headers["X-Sig"])
    assert not verify(b"s3cret", body + b" ", headers["X-Sig"])
    assert not verify(b"other", body, headers["X-Sig"])
    assert not verify(b"s3cret", body, None)
    assert "X-Sig" not in request_headers(
        delivery_id="n1", notification_type="x", body=body, signature_key="X-Sig"
    )


def test_backoff_doubles_to_a_cap_with_jitter_below() -> None:
    """Waits grow ×2 from the base, stop at the cap, jitter only shortens, Retry-After
    lengthens (capped)."""
    policy = RetryPolicy(max_attempts=5, base_s=1, cap_s=5, jitter=0.5)
    assert [policy.delay_s(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert policy.delay_s(3, draw=0.0) == 2.0
    assert policy.delay_s(1, retry_after_s=3) == 3
    assert policy.delay_s(1, retry_after_s=60) == 5
    assert not policy.gives_up_after(4) and policy.gives_up_after(5)
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (429, True), (408, True), (400, False), (404, False), (410, False)],
)
def test_which_statuses_are_retried(status: int, retryable: bool) -> None:
    """Server errors, 408 and 429 are retried; other 4xx are given up at once."""
    assert is_retryable_status(status) is retryable


@pytest.mark.parametrize(
    ("status", "type_", "title"),
    [
        ("SUCCESS", "DEPLOYMENT_CHAIN_SUCCEEDED", 'Deployment chain started by "web" completed'),
        ("FAILURE", "DEPLOYMENT_CHAIN_FAILED", 'Deployment chain started by "web" failed'),
        ("CANCELLED", "DEPLOYMENT_CHAIN_CANCELLED", 'Deployment chain started by "web" was'),
    ],
)
def test_a_chain_that_ends_notifies_with_its_reason(status: str, type_: str, title: str) -> None:
    """ChainCompleted makes a DEPLOYMENT_CHAIN_* notification about the chain's origin."""
    event = ChainCompleted(
        chain_id="c1",
        status=vocabulary.DeploymentStatus(status),
        reason="block 1: deployment d2 of application web-stg ended FAILURE",
        application_id=A,
        deployment_id=D,
    )
    assert notification_type_of(event) == NotificationType(type_)
    assert GROUP_OF[NotificationType(type_)] is NotificationGroup.DEPLOYMENT
    message = compose(
        notification_id="n1",
        type_=NotificationType(type_),
        event=event,
        event_id="e1",
        event_type="chain_completed",
        occurred_at=NOW,
        application=AppFacts(application_id=A, name="web"),
        deployment=None,
    )
    assert message.title.startswith(title)
    assert "web-stg ended FAILURE" in message.text


def test_a_service_start_and_stop_say_which_service_instance_and_why() -> None:
    """ServiceStarted/ServiceStopped make PIPED_STARTED/PIPED_STOPPED (group PIPED); a graceful
    stop is a warning with its reason, a crash an error."""
    started = ServiceStarted(service="planner", instance="planner-0", version="0.1.0")
    stopped = ServiceStopped(
        service="planner", instance="planner-0", version="0.1.0", reason="SIGTERM"
    )
    assert notification_types_of(started) == (T.PIPED_STARTED,)
    assert notification_types_of(stopped) == (T.PIPED_STOPPED,)

    def message(type_: NotificationType, event: Event) -> Message:
        return compose(
            notification_id="n",
            type_=type_,
            event=event,
            event_id="e",
            event_type="service_stopped",
            occurred_at=NOW,
            application=None,
            deployment=None,
        )

    start = message(T.PIPED_STARTED, started)
    assert (start.title, start.group, start.severity, start.reason) == (
        'Service "planner" started',
        "PIPED",
        "info",
        "",
    )
    assert "planner-0" in start.text
    stop = message(T.PIPED_STOPPED, stopped)
    assert (stop.title, stop.severity, stop.reason) == (
        'Service "planner" stopped',
        "warning",
        "SIGTERM",
    )
    assert stop.text == "Instance planner-0 (Slipway 0.1.0) stopped: SIGTERM"
    crash = message(T.PIPED_STOPPED, msgspec_replace(stopped, crashed=True))
    assert (crash.title, crash.severity) == ('Service "planner" crashed', "error")


def _message_deploying(version: str, labels: tuple[tuple[str, str], ...] = ()) -> Message:
    deployment = fold_deployment(D, [TRIGGERED, msgspec_replace(PLANNED, version=version)])
    return compose(
        notification_id="n1",
        type_=T.DEPLOYMENT_PLANNED,
        event=PLANNED,
        event_id="e1",
        event_type="deployment_planned",
        occurred_at=NOW,
        application=AppFacts(application_id=A, name="web", labels=labels),
        deployment=deployment,
    )


def test_the_version_deployed_is_a_slack_field_and_in_the_webhook_body_escaped_and_clipped() -> (
    None
):
    """The version its plan deploys (PipeCD's deployment `version`) is a Slack field and the
    webhook body's `deployment.version`: a repository's tag, so Slack's markup is escaped (no
    `<!channel>` ping, no link) and an absurd one is clipped; labels are escaped too."""
    hostile = "<!channel> <script>alert(1)</script> & <https://evil.example|v2>"
    message = _message_deploying(hostile, labels=(("env", "<!here>"),))
    fields = next(b["fields"] for b in slack_payload(message)["blocks"] if "fields" in b)
    text = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in fields}
    assert text["*Version*"] == (
        "&lt;!channel&gt; &lt;script&gt;alert(1)&lt;/script&gt; &amp; "
        "&lt;https://evil.example|v2&gt;"
    )
    assert text["*Environment*"] == "env: &lt;!here&gt;"
    assert json.loads(webhook_body(message))["deployment"]["version"] == hostile

    huge = _message_deploying("9" * 100_000)
    assert huge.deployment is not None
    assert huge.deployment.version == "9" * 199 + "…"
    assert len(json.dumps(slack_payload(huge))) < 5_000
    unplanned = fold_deployment(D, [TRIGGERED])
    assert unplanned.version == ""
    assert "*Version*" not in json.dumps(slack_payload(failed_message()))
