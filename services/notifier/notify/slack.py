"""A `Message` as a Slack incoming-webhook payload in Block Kit.

Layout: a header (the title), the text, a fields section (application,
environment labels, commit, version, stage, reason, deployment), the mentions, and a
button to the message's link. Slack's limits are respected by truncating
(header 150 characters, section text 3000, a field 2000, at most 10 fields),
because a payload over a limit is refused whole (`invalid_blocks`), and a
shortened message beats none. The top-level `text` is the notification
fallback (phones, screen readers) and carries the mentions, so they ping.
"""

from __future__ import annotations

from typing import Any, Final

from services.notifier.notify.message import Mentions, Message

__all__ = ["mention_text", "slack_payload"]

_HEADER_MAX: Final = 150
_TEXT_MAX: Final = 3000
_FIELD_MAX: Final = 2000
_FIELDS_MAX: Final = 10
_SHORT_HASH: Final = 8


def mention_text(mentions: Mentions) -> str:
    """`<@U1> <!subteam^S1>`: how Slack's markup mentions members and user groups."""
    return " ".join(
        [f"<@{user}>" for user in mentions.users]
        + [f"<!subteam^{group}>" for group in mentions.groups]
    )


def slack_payload(message: Message) -> dict[str, Any]:
    """The JSON object to POST to the hook URL."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(_cut(message.title, _HEADER_MAX))}
    ]
    if message.text:
        blocks.append({"type": "section", "text": _mrkdwn(_cut(_escape(message.text), _TEXT_MAX))})
    fields = _fields(message)
    if fields:
        blocks.append({"type": "section", "fields": fields[:_FIELDS_MAX]})
    mentioned = mention_text(message.mentions)
    if mentioned:
        blocks.append({"type": "section", "text": _mrkdwn(mentioned)})
    if message.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": _plain("Open in Slipway"),
                        "url": message.link,
                        "action_id": "open",
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(f"{message.type.value} · {message.occurred_at.isoformat()} · {message.id}")
            ],
        }
    )
    fallback = message.title + (f" {mentioned}" if mentioned else "")
    return {"text": _cut(fallback, _TEXT_MAX), "blocks": blocks}


def _fields(message: Message) -> list[dict[str, str]]:
    values: list[tuple[str, str]] = []
    if message.application is not None:
        name = _escape(message.application.name)
        values.append(("Application", name))
    if message.environment:
        labels = ", ".join(f"{k}: {v}" for k, v in message.environment)
        values.append(("Environment", _escape(labels)))
    if message.commit_hash:
        commit = f"`{message.commit_hash[:_SHORT_HASH]}`"
        first_line = message.commit_message.splitlines()[0] if message.commit_message else ""
        values.append(("Commit", f"{commit} {_escape(first_line)}".strip()))
    if message.deployment is not None and message.deployment.version:
        # An image tag from the repository: escaped like the commit message.
        values.append(("Version", _escape(message.deployment.version)))
    if message.stage:
        values.append(("Stage", message.stage))
    if message.reason:
        values.append(("Reason", _escape(message.reason)))
    deployment = message.deployment
    if deployment is not None and deployment.deployment_id:
        shown = deployment.deployment_id
        values.append(("Deployment", f"<{message.link}|{shown}>" if message.link else shown))
    return [_mrkdwn(_cut(f"*{title}*\n{value}", _FIELD_MAX)) for title, value in values]


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text or " ", "emoji": True}


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _escape(text: str) -> str:
    """Slack's three control characters, so a commit message cannot inject a mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
