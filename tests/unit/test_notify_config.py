"""The notification part of the control config: mentions per event, webAddress, receivers'
secrets read at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.notifier.targets import targets_of
from shared.config import ConfigFileError, load_control_config
from shared.errors import ConfigError

SLIPWAY = """\
apiVersion: slipway.dev/v1
kind: Slipway
spec:
  project: demo
  webAddress: https://slipway.example
  notifications:
    routes: [{name: all, receiver: slack}]
    receivers:
      - name: slack
        slack:
          hookURLFile: hook.txt
          mentionedAccounts: [U0]
          mentions:
            - {event: DEPLOYMENT_FAILED, slackUsers: [U1], slackGroups: [S1]}
      - name: audit
        webhook: {url: "http://127.0.0.1:9/hook", signatureSecretFile: secret.txt}
"""


def test_mentions_web_address_and_secret_files_load(tmp_path: Path) -> None:
    """Per-event mentions and webAddress parse; hook URL and HMAC secret come from their files,
    relative to the config."""
    (tmp_path / "hook.txt").write_text("http://127.0.0.1:9/slack\n")
    (tmp_path / "secret.txt").write_text("s3cret\n")
    path = tmp_path / "slipway.yaml"
    path.write_text(SLIPWAY)
    control = load_control_config(path)
    assert control.spec.web_address == "https://slipway.example"
    slack = control.spec.notifications.receivers[0].slack
    assert slack is not None
    (mention,) = slack.mentions
    assert (mention.event, mention.slack_users, mention.slack_groups) == (
        "DEPLOYMENT_FAILED",
        ("U1",),
        ("S1",),
    )
    targets = targets_of(control)
    assert targets["slack"].url == "http://127.0.0.1:9/slack"
    assert (targets["audit"].kind, targets["audit"].secret) == ("webhook", b"s3cret")
    assert targets["audit"].signature_key == "Slipway-Signature"


def test_missing_secret_file_is_named(tmp_path: Path) -> None:
    """A secret file that cannot be read stops the notifier with the config, receiver and file."""
    (tmp_path / "hook.txt").write_text("http://127.0.0.1:9/slack")
    path = tmp_path / "slipway.yaml"
    path.write_text(SLIPWAY)
    with pytest.raises(ConfigError, match=r"receiver 'audit': cannot read .*secret\.txt"):
        targets_of(load_control_config(path))


def test_a_mention_of_an_unknown_event_is_located() -> None:
    """A mention's event must be a PipeCD notification type; the error names line and field."""
    text = SLIPWAY.replace("{event: DEPLOYMENT_FAILED,", "{event: DEPLOY_FAILED,")
    with pytest.raises(ConfigFileError) as caught:
        load_control_config(Path("slipway.yaml"), text)
    message = str(caught.value)
    assert message.startswith("slipway.yaml:14:16: ")
    assert "spec.notifications.receivers[0].slack.mentions[0].event" in message
    assert 'got "DEPLOY_FAILED"' in message


def test_piped_web_address_links_notifications() -> None:
    """A PipeCD Piped file's webAddress is used for links (no longer warned as ignored)."""
    control = load_control_config(
        Path("piped.yaml"),
        "apiVersion: pipecd.dev/v1beta1\nkind: Piped\nspec:\n  projectID: p\n"
        "  webAddress: https://pipecd.example\n",
    )
    assert control.spec.web_address == "https://pipecd.example"
    assert not [w for w in control.warnings if "webAddress" in str(w)]
