"""Slack parity, pure: the Web API receiver's config rules, request and answers; the mentions an
application's config asks for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.gitwatcher.configs import read_app_config
from services.gitwatcher.decider import decide_config_observed
from services.notifier.delivery import Attempt
from services.notifier.notify.catalog import NotificationType
from services.notifier.notify.facts import config_mentions_of
from services.notifier.notify.message import config_mentions_for
from services.notifier.notify.slack_api import post_message_body, read_answer
from services.notifier.targets import targets_of
from shared.config.control_loader import load_control_config
from shared.config.errors import ConfigFileError
from shared.events.catalog import ApplicationConfigObserved, ConfigMention
from shared.redaction import redact

HEAD = """\
apiVersion: slipway.dev/v1
kind: Slipway
spec:
  project: demo
  notifications:
    receivers:
      - name: s
        slack:
"""


@pytest.mark.parametrize(
    ("slack", "expected"),
    [
        (
            "          hookURL: https://hooks.example/x\n          channelID: C1\n"
            "          oauthToken: xoxb-1\n",
            "spec.notifications.receivers[0].slack: set hookURL (a webhook) or oauthToken and "
            "channelID, not both",
        ),
        (
            "          oauthToken: xoxb-1\n",
            "spec.notifications.receivers[0].slack.channelID: required with oauthToken",
        ),
        (
            "          channelID: C1\n",
            "spec.notifications.receivers[0].slack.oauthToken: set one of oauthToken, "
            "oauthTokenFile and oauthTokenData",
        ),
        (
            "          channelID: C1\n          oauthToken: a\n          oauthTokenFile: /t\n",
            "spec.notifications.receivers[0].slack.oauthToken: set one of",
        ),
        (
            "          channelID: C1\n          oauthTokenData: '%%%'\n",
            "spec.notifications.receivers[0].slack.oauthTokenData: not base64",
        ),
        ("          mentionedAccounts: [U1]\n", "set hookURL or hookURLFile (one of them), or"),
    ],
)
def test_a_slack_receiver_is_a_hook_or_the_api_never_both(slack: str, expected: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_control_config(Path("slipway.yaml"), HEAD + slack)
    assert expected in str(caught.value)


def test_the_token_comes_from_any_of_pipecds_three_places_and_is_redacted(
    tmp_path: Path,
) -> None:
    (tmp_path / "token").write_text("xoxb-from-a-file-0001\n")
    text = HEAD.replace("      - name: s\n        slack:\n", "") + "".join(
        f"      - name: {name}\n        slack: {{channelID: C1, {field}}}\n"
        for name, field in (
            ("inline", "oauthToken: xoxb-inline-00000001"),
            ("file", "oauthTokenFile: token"),
            ("data", "oauthTokenData: eG94Yi1iYXNlNjQtMDAwMDAx"),  # xoxb-base64-000001
        )
    )
    (tmp_path / "slipway.yaml").write_text(text)
    targets = targets_of(
        load_control_config(tmp_path / "slipway.yaml"), slack_api_url="http://s/api/"
    )
    assert {name: t.token for name, t in targets.items()} == {
        "inline": "xoxb-inline-00000001",
        "file": "xoxb-from-a-file-0001",
        "data": "xoxb-base64-000001",
    }
    assert {t.url for t in targets.values()} == {"http://s/api/chat.postMessage"}
    assert all(t.slack_api and t.channel == "C1" for t in targets.values())
    assert "xoxb-from-a-file-0001" not in redact("Bearer xoxb-from-a-file-0001 refused")


def test_the_request_is_the_stored_message_with_channel_and_thread() -> None:
    stored = json.dumps({"text": 'Deployment for "web" failed', "blocks": [{"type": "header"}]})
    first = json.loads(post_message_body(stored, channel="C1", thread_ts=None))
    later = json.loads(post_message_body(stored, channel="C1", thread_ts="1700000000.000001"))
    assert first == {**json.loads(stored), "channel": "C1"}
    assert later["thread_ts"] == "1700000000.000001"


def test_only_ok_true_is_a_delivery_and_only_transient_errors_are_retried() -> None:
    assert read_answer(b'{"ok": true, "ts": "1.2", "channel": "C1"}').ts == "1.2"
    for raw, error in (
        (b'{"ok": false, "error": "channel_not_found"}', "channel_not_found"),
        (b"ok", "the answer is not JSON"),  # a hook's answer, or a proxy's page
        (b"[]", "the answer is not a JSON object"),
        (b'{"channel": "C1"}', "the answer has no ok: true"),
    ):
        answer = read_answer(raw)
        assert (answer.ok, answer.error, answer.retryable) == (False, error, False)
    assert read_answer(b'{"ok": false, "error": "ratelimited"}').retryable
    refused = Attempt(200, "Slack API error: invalid_auth", slack_error="invalid_auth")
    assert (refused.delivered, refused.retryable) == (False, False)
    busy = Attempt(200, "Slack API error: service_unavailable", slack_error="service_unavailable")
    assert (busy.delivered, busy.retryable) == (False, True)
    assert Attempt(200).delivered and Attempt(429).retryable


# --- the application's own `notification.mentions` ---------------------------------------------

_APP_CONFIG = b"""\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: web
  notification:
    mentions:
      - event: DEPLOYMENT_FAILED
        slack: [U1]
        slackGroups: [S1]
      - event: "*"
        slack: [U2]
        slackUsers: [U3, U2]
"""


def test_the_gitwatcher_reads_an_apps_mentions_and_records_their_changes() -> None:
    facts = read_app_config("web/app.pipecd.yaml", _APP_CONFIG)
    assert facts.mentions == (
        ConfigMention(event="DEPLOYMENT_FAILED", slack_users=("U1",), slack_groups=("S1",)),
        ConfigMention(event="*", slack_users=("U2", "U3")),
    )
    observed = ApplicationConfigObserved(
        repository_id="r", application_id="a", commit_hash="c", mentions=facts.mentions
    )
    assert decide_config_observed(((), (), ""), observed) == [observed]  # mentions changed
    assert decide_config_observed(((), facts.mentions, ""), observed) == []


def test_an_apps_mentions_are_made_for_its_event_and_for_star() -> None:
    mentions = read_app_config("web/app.pipecd.yaml", _APP_CONFIG).mentions
    failed = config_mentions_for(mentions, NotificationType.DEPLOYMENT_FAILED)
    assert (failed.users, failed.groups) == (("U1", "U2", "U3"), ("S1",))
    planned = config_mentions_for(mentions, NotificationType.DEPLOYMENT_PLANNED)
    assert (planned.users, planned.groups) == (("U2", "U3"), ())
    assert (
        config_mentions_of(
            [ApplicationConfigObserved(repository_id="r", application_id="a", commit_hash="c")]
        )
        == ()
    )
