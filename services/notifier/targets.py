"""The receivers of the control config, made ready to send to: URLs and secrets read once.

Secrets in files are read at start-up, so a missing file stops the service
with the file's name instead of failing every delivery later. A Slack
receiver with `channelID` posts to Slack's Web API (`chat.postMessage` below
`slack_api_url`) with its bot token; the token is added to the redactor, so
no error or log line can carry it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from shared.config.control import ControlConfig, SlackReceiver
from shared.errors import ConfigError
from shared.redaction import REDACTOR

__all__ = ["SLACK_API_URL", "Target", "targets_of"]

SLACK_API_URL: Final = "https://slack.com/api"
"""Slack's Web API; `SLIPWAY_NOTIFIER_SLACK_API_URL` points it elsewhere (a test's receiver)."""


@dataclass(frozen=True)
class Target:
    """Where one receiver's notifications are POSTed, and how they are signed."""

    name: str
    kind: Literal["slack", "webhook"]
    url: str
    slack: SlackReceiver | None = None
    signature_key: str = ""
    secret: bytes = b""
    token: str = ""
    """A Slack bot token: `url` is then `chat.postMessage`, and the message goes to `channel`."""
    channel: str = ""

    @property
    def slack_api(self) -> bool:
        """Whether messages go through chat.postMessage (a bot token) rather than a hook URL."""
        return bool(self.token)


def targets_of(
    control: ControlConfig, *, slack_api_url: str = SLACK_API_URL
) -> Mapping[str, Target]:
    """Every receiver of `control`, by name."""
    targets: dict[str, Target] = {}
    base = control.path.parent
    for receiver in control.spec.notifications.receivers:
        where = f"{control.path}: receiver {receiver.name!r}"
        if receiver.slack is not None and receiver.slack.uses_api:
            token = _token(base, receiver.slack, where)
            REDACTOR.add(token, pinned=True)
            targets[receiver.name] = Target(
                name=receiver.name,
                kind="slack",
                url=f"{slack_api_url.rstrip('/')}/chat.postMessage",
                slack=receiver.slack,
                token=token,
                channel=receiver.slack.channel_id,
            )
        elif receiver.slack is not None:
            url = receiver.slack.hook_url or _read(base, receiver.slack.hook_url_file, where)
            targets[receiver.name] = Target(
                name=receiver.name, kind="slack", url=url.strip(), slack=receiver.slack
            )
        elif receiver.webhook is not None:
            hook = receiver.webhook
            secret = hook.signature_value
            if hook.signature_secret_file:
                secret = _read(base, hook.signature_secret_file, where).strip()
            targets[receiver.name] = Target(
                name=receiver.name,
                kind="webhook",
                url=hook.url,
                signature_key=hook.signature_key,
                secret=secret.encode(),
            )
    return targets


def _token(base: Path, slack: SlackReceiver, where: str) -> str:
    """The bot token from wherever the receiver keeps it (PipeCD's three ways)."""
    if slack.oauth_token_data:
        token = base64.b64decode(slack.oauth_token_data).decode("utf-8", "replace")
    elif slack.oauth_token_file:
        token = _read(base, slack.oauth_token_file, where)
    else:
        token = slack.oauth_token
    token = token.strip()
    if not token:
        raise ConfigError(f"{where}: the Slack OAuth token is empty")
    return token


def _read(base: Path, name: str, where: str) -> str:
    path = (base / Path(name).expanduser()).resolve()
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from exc
