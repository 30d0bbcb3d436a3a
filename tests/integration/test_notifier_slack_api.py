"""Slack's Web API receiver (`oauthToken` + `channelID`) over real NATS + PostgreSQL, against a
local chat.postMessage that checks Slack's shapes (tests/support/slack_api.py)."""

from __future__ import annotations

import json
from pathlib import Path

from services.notifier.notify.retry import RetryPolicy
from shared.config.control_loader import load_control_config
from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import (
    ApplicationConfigObserved,
    ConfigMention,
    NotificationAttemptFailed,
    NotificationFailed,
)
from shared.testing import wait_until
from tests.support import Backends, write_control_yaml
from tests.support.notifier import (
    failing_deployment,
    notifier_running,
    recorded,
    register,
    settle,
)
from tests.support.slack_api import CHANNEL, TOKEN, slack_api

WAIT_S = 30.0
RETRY_AFTER = RetryPolicy(base_s=0.05, cap_s=2.0)
"""Fast retries whose cap lets Slack's `Retry-After: 1` be honoured whole."""
PER_DEPLOYMENT = [
    "DEPLOYMENT_TRIGGERED",
    "DEPLOYMENT_PLANNED",
    "STAGE_STARTED",
    "STAGE_FAILED",
    "DEPLOYMENT_ROLLING_BACK",
    "STAGE_STARTED",
    "DEPLOYMENT_FAILED",
]
"""What `failing_deployment` makes for routes of the DEPLOYMENT and STAGE groups, in order."""


async def test_one_deployment_is_one_thread_with_bearer_token_and_slacks_errors(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """Two deployments' messages go to chat.postMessage with the bot token and channel, each
    deployment in its own thread (the first message starts it); a 429 is retried after its
    Retry-After; an `ok: false` answer (a wrong token) fails at once and is never retried."""
    token_file = tmp_path / "slack-token"
    token_file.write_text(TOKEN + "\n")
    async with slack_api(rate_limited=1) as slack:
        write_control_yaml(
            tmp_path / "slipway.yaml",
            webAddress="https://slipway.example",
            notifications={
                "routes": [
                    {"name": "all", "receiver": "slack", "groups": ["DEPLOYMENT", "STAGE"]},
                    {"name": "bad", "receiver": "wrong", "events": ["DEPLOYMENT_FAILED"]},
                ],
                "receivers": [
                    {
                        "name": "slack",
                        "slack": {
                            "oauthTokenFile": str(token_file),
                            "channelID": CHANNEL,
                            "mentionedAccounts": ["U0"],
                        },
                    },
                    {
                        "name": "wrong",
                        "slack": {"oauthToken": "xoxb-revoked", "channelID": CHANNEL},
                    },
                ],
            },
        )
        control = load_control_config(tmp_path / "slipway.yaml")
        await register(store, "web1", "web", "prd")
        async with notifier_running(control, backends, policy=RETRY_AFTER, slack_api_url=slack.url):
            for deployment_id in ("d1", "d2"):
                for event in failing_deployment(deployment_id, "web1"):
                    await store.append(
                        f"deployment-{deployment_id}", new_events([event]), expected_version=ANY
                    )
            await wait_until(
                lambda: len(slack.posted) >= 2 * len(PER_DEPLOYMENT),
                within_s=WAIT_S,
                what=lambda: f"{len(slack.posted)} posted, errors {slack.errors}",
            )
            await wait_until(
                recorded(store, "notification_failed", 2), within_s=WAIT_S, what="2 failed"
            )
            await settle()

        assert len(slack.posted) == 2 * len(PER_DEPLOYMENT)
        assert slack.errors == ["invalid_auth", "invalid_auth"]  # the wrong receiver, once each
        for posted in slack.posted:
            assert posted.headers["Authorization"] == f"Bearer {TOKEN}"
            assert posted.headers["Content-Type"] == "application/json; charset=utf-8"
            assert posted.body["channel"] == CHANNEL
            assert posted.body["text"].endswith("<@U0>")
        for deployment_id in ("d1", "d2"):
            mine = [
                p for p in slack.posted if f"/deployments/{deployment_id}|" in json.dumps(p.body)
            ]
            # Once the thread exists the rest go up to `concurrency` at once, in any order.
            assert sorted(p.headers["Slipway-Event"] for p in mine) == sorted(PER_DEPLOYMENT)
            first, *rest = mine
            assert first.headers["Slipway-Event"] == "DEPLOYMENT_TRIGGERED"
            assert "thread_ts" not in first.body  # the first message starts the thread
            assert {p.body["thread_ts"] for p in rest} == {first.ts}

        attempts = [
            e.event
            for e in await store.read_all(limit=10_000)
            if isinstance(e.event, NotificationAttemptFailed | NotificationFailed)
        ]
        [limited] = [e for e in attempts if isinstance(e, NotificationAttemptFailed)]
        assert (limited.status_code, limited.retry_in_s) == (429, 1.0)
        failed = [e for e in attempts if isinstance(e, NotificationFailed)]
        assert [(f.attempts, f.error) for f in failed] == [(1, "Slack API error: invalid_auth")] * 2
        assert all("xoxb" not in f.error for f in failed)


async def test_the_applications_config_mentions_reach_its_messages(
    backends: Backends, store: EventStore, tmp_path: Path
) -> None:
    """`spec.notification.mentions` of the app's config (recorded by the gitwatcher on
    `appconfig-<id>`) mention their people on that event's messages, "*" on every one."""
    async with slack_api() as slack:
        write_control_yaml(
            tmp_path / "slipway.yaml",
            notifications={
                "routes": [{"name": "all", "receiver": "slack", "groups": ["DEPLOYMENT"]}],
                "receivers": [
                    {"name": "slack", "slack": {"oauthToken": TOKEN, "channelID": CHANNEL}}
                ],
            },
        )
        control = load_control_config(tmp_path / "slipway.yaml")
        await register(store, "web1", "web", "prd")
        mentions = (
            ConfigMention(event="DEPLOYMENT_FAILED", slack_users=("U1",), slack_groups=("S1",)),
            ConfigMention(event="*", slack_users=("U2",)),
        )
        observed = ApplicationConfigObserved(
            repository_id="config", application_id="web1", commit_hash="c", mentions=mentions
        )
        await store.append("appconfig-web1", new_events([observed]), expected_version=ANY)
        async with notifier_running(control, backends, slack_api_url=slack.url):
            for event in failing_deployment("d1", "web1"):
                await store.append("deployment-d1", new_events([event]), expected_version=ANY)
            await wait_until(
                lambda: len(slack.posted) >= 4,
                within_s=WAIT_S,
                what=lambda: f"{len(slack.posted)} posted, errors {slack.errors}",
            )
        texts = {p.headers["Slipway-Event"]: p.body["text"] for p in slack.posted}
        assert texts["DEPLOYMENT_FAILED"].endswith("<@U1> <@U2> <!subteam^S1>")
        assert texts["DEPLOYMENT_TRIGGERED"].endswith("<@U2>")
        assert "<@U1>" not in texts["DEPLOYMENT_TRIGGERED"]
