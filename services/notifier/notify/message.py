"""The notification itself, receiver-neutral: what happened, to what, and who to mention.

`compose` is pure; it gets the ids and the time from its caller (the source
event's id and recorded time), so composing the same event twice gives the
same message byte for byte. The generic webhook sends a `Message` as its
JSON body; the Slack receiver renders it as Block Kit (`slack.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

import msgspec

from services.notifier.notify.catalog import GROUP_OF, NotificationType
from services.notifier.notify.facts import AppFacts, DeploymentFacts
from shared.config.control import SlackReceiver
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationHealthChanged,
    ApplicationSyncStateChanged,
    ChainCompleted,
    ConfigMention,
    ServiceStarted,
    ServiceStopped,
    StageApproved,
)

__all__ = [
    "NO_MENTIONS",
    "Mentions",
    "Message",
    "compose",
    "config_mentions_for",
    "mentions_for",
    "merge_mentions",
]

_T = NotificationType

# Severity, which Slack shows as the message's colour and a webhook may use as it likes.
_SEVERITY: Final = {
    _T.DEPLOYMENT_SUCCEEDED: "success",
    _T.APPLICATION_SYNCED: "success",
    _T.APPLICATION_HEALTHY: "success",
    _T.DEPLOYMENT_FAILED: "error",
    _T.DEPLOYMENT_CHAIN_SUCCEEDED: "success",
    _T.DEPLOYMENT_CHAIN_FAILED: "error",
    _T.DEPLOYMENT_CHAIN_CANCELLED: "warning",
    _T.DEPLOYMENT_TRIGGER_FAILED: "error",
    _T.DEPLOYMENT_ROLLING_BACK: "warning",
    _T.DEPLOYMENT_CANCELLED: "warning",
    _T.APPLICATION_OUT_OF_SYNC: "warning",
    _T.STAGE_SUCCEEDED: "success",
    _T.STAGE_FAILED: "error",
    _T.STAGE_CANCELLED: "warning",
    _T.PIPED_STOPPED: "warning",
}


_STAGE_ENDED: Final = {
    _T.STAGE_SKIPPED: "was skipped",
    _T.STAGE_SUCCEEDED: "succeeded",
    _T.STAGE_FAILED: "failed",
    _T.STAGE_CANCELLED: "was cancelled",
}


class Mentions(msgspec.Struct, frozen=True, kw_only=True):
    """Slack member ids (`U…`) and user-group ids (`S…`) to mention."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.users or self.groups)


NO_MENTIONS: Final = Mentions()


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One notification for one receiver (the generic webhook's JSON body, as is)."""

    id: str
    """The delivery id: the same on every attempt, so receivers can drop a repeat."""
    type: NotificationType
    group: str
    severity: str
    title: str
    text: str
    occurred_at: datetime
    source_event_id: str
    source_event_type: str
    application: AppFacts | None = None
    deployment: DeploymentFacts | None = None
    commit_hash: str = ""
    commit_message: str = ""
    stage: str = ""
    reason: str = ""
    link: str = ""
    mentions: Mentions = NO_MENTIONS

    @property
    def environment(self) -> tuple[tuple[str, str], ...]:
        """The application's labels (PipeCD's `env: prd` and friends)."""
        return self.application.labels if self.application is not None else ()


def mentions_for(receiver: SlackReceiver, type_: NotificationType) -> Mentions:
    """Who the receiver mentions for this type: its accounts for every event, plus its
    per-event `mentions`."""
    users = list(receiver.mentioned_accounts)
    groups = list(receiver.mentioned_groups)
    for mention in receiver.mentions:
        if mention.event.removeprefix("EVENT_") == type_.value:
            users.extend(mention.slack_users)
            groups.extend(mention.slack_groups)
    return Mentions(users=_unique(users), groups=_unique(groups))


def config_mentions_for(mentions: Iterable[ConfigMention], type_: NotificationType) -> Mentions:
    """Who the application's config (`spec.notification.mentions`) mentions for this type:
    the entries of its event, and those of "*" (every event), as PipeCD's notifier does."""
    users: list[str] = []
    groups: list[str] = []
    for mention in mentions:
        if mention.event in ("*", type_.value):
            users.extend(mention.slack_users)
            groups.extend(mention.slack_groups)
    return Mentions(users=_unique(users), groups=_unique(groups))


def merge_mentions(mentions: Iterable[Mentions]) -> Mentions:
    """Everyone in any of `mentions`, each once, in order."""
    every = list(mentions)
    return Mentions(
        users=_unique([u for m in every for u in m.users]),
        groups=_unique([g for m in every for g in m.groups]),
    )


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def compose(
    *,
    notification_id: str,
    type_: NotificationType,
    event: Event,
    event_id: str,
    event_type: str,
    occurred_at: datetime,
    application: AppFacts | None,
    deployment: DeploymentFacts | None,
    web_url: str = "",
    mentions: Mentions = NO_MENTIONS,
) -> Message:
    """The message for `event`, which made a notification of type `type_`."""
    app = application.name if application is not None else _app_id(event, deployment)
    title, text = _words(type_, app, event, deployment)
    commit_hash = deployment.commit_hash if deployment is not None else ""
    commit_message = deployment.commit_message if deployment is not None else ""
    if isinstance(event, ApplicationSyncStateChanged):
        commit_hash = commit_hash or event.commit_hash
    reason = deployment.reason if deployment is not None else ""
    severity = _SEVERITY.get(type_, "info")
    if isinstance(event, ServiceStopped):
        reason = event.reason
        severity = "error" if event.crashed else severity
    return Message(
        id=notification_id,
        type=type_,
        group=GROUP_OF[type_].value,
        severity=severity,
        title=title,
        text=text,
        occurred_at=occurred_at,
        source_event_id=event_id,
        source_event_type=event_type,
        application=application,
        deployment=deployment,
        commit_hash=commit_hash,
        commit_message=commit_message,
        stage=deployment.stage_name if deployment is not None else "",
        reason=reason if type_ in _REASONED else "",
        link=_link(web_url, application, deployment, event),
        mentions=mentions,
    )


_REASONED: Final = frozenset(
    {
        _T.DEPLOYMENT_FAILED,
        _T.DEPLOYMENT_CANCELLED,
        _T.DEPLOYMENT_ROLLING_BACK,
        _T.DEPLOYMENT_TRIGGER_FAILED,
        _T.STAGE_FAILED,
        _T.PIPED_STOPPED,
    }
)


def _app_id(event: Event, deployment: DeploymentFacts | None) -> str:
    if deployment is not None and deployment.application_id:
        return deployment.application_id
    return str(getattr(event, "application_id", "")) or "an application"


def _words(
    type_: NotificationType, app: str, event: Event, deployment: DeploymentFacts | None
) -> tuple[str, str]:
    """Title and text, in PipeCD's words where PipeCD has them."""
    d = deployment or DeploymentFacts(deployment_id="")
    match type_:
        case _T.DEPLOYMENT_TRIGGERED:
            by = f" by {d.commander}" if d.commander else ""
            return f'Triggered a new deployment for "{app}"', f"Triggered {d.trigger}{by}".strip()
        case _T.DEPLOYMENT_PLANNED:
            return f'Deployment for "{app}" was planned', d.summary
        case _T.DEPLOYMENT_WAIT_APPROVAL:
            return f'Deployment for "{app}" is waiting for an approval', ""
        case _T.DEPLOYMENT_APPROVED:
            approver = event.approver if isinstance(event, StageApproved) else d.approver
            return f'Deployment for "{app}" was approved', f"Approved by {approver}"
        case _T.DEPLOYMENT_ROLLING_BACK:
            return f'Deployment for "{app}" is rolling back', d.reason
        case _T.DEPLOYMENT_SUCCEEDED:
            return f'Deployment for "{app}" was completed successfully', d.summary
        case _T.DEPLOYMENT_FAILED:
            return f'Deployment for "{app}" failed', d.reason
        case _T.DEPLOYMENT_CANCELLED:
            by = f"Cancelled by {d.cancelled_by}" if d.cancelled_by else "Cancelled"
            return f'Deployment for "{app}" was cancelled', by
        case _T.DEPLOYMENT_TRIGGER_FAILED:
            return f'Failed to trigger a new deployment for "{app}"', d.reason
        case _T.DEPLOYMENT_STARTED:
            return f'Deployment for "{app}" was started', d.summary
        case _T.STAGE_STARTED:
            return f'Stage "{d.stage_name}" of deployment for "{app}" started', ""
        case _T.STAGE_SKIPPED | _T.STAGE_SUCCEEDED | _T.STAGE_FAILED | _T.STAGE_CANCELLED:
            ended = _STAGE_ENDED[type_]
            return f'Stage "{d.stage_name}" of deployment for "{app}" {ended}', (
                d.reason if type_ is _T.STAGE_FAILED else ""
            )
        case _T.APPLICATION_HEALTHY:
            summary = event.summary if isinstance(event, ApplicationHealthChanged) else ""
            return f'Application "{app}" is healthy', summary
        case (
            _T.DEPLOYMENT_CHAIN_SUCCEEDED
            | _T.DEPLOYMENT_CHAIN_FAILED
            | _T.DEPLOYMENT_CHAIN_CANCELLED
        ):
            chain_ended = {"SUCCEEDED": "completed successfully", "FAILED": "failed"}
            word = chain_ended.get(type_.value.rsplit("_", 1)[1], "was cancelled")
            reason = event.reason if isinstance(event, ChainCompleted) else ""
            return f'Deployment chain started by "{app}" {word}', reason
        case _T.PIPED_STARTED if isinstance(event, ServiceStarted):
            return (
                f'Service "{event.service}" started',
                f"Instance {event.instance} (Slipway {event.version}) is ready",
            )
        case _T.PIPED_STOPPED if isinstance(event, ServiceStopped):
            ended = "crashed" if event.crashed else "stopped"
            return (
                f'Service "{event.service}" {ended}',
                f"Instance {event.instance} (Slipway {event.version}) stopped: {event.reason}",
            )
        case _T.APPLICATION_SYNCED | _T.APPLICATION_OUT_OF_SYNC:
            state = "in sync" if type_ is _T.APPLICATION_SYNCED else "out of sync"
            summary = event.summary if isinstance(event, ApplicationSyncStateChanged) else ""
            return f'Application "{app}" is {state}', summary
    return f"{type_.value.replace('_', ' ').capitalize()}", ""


def _link(
    web_url: str, app: AppFacts | None, deployment: DeploymentFacts | None, event: Event
) -> str:
    if not web_url:
        return ""
    base = web_url.rstrip("/")
    if deployment is not None and deployment.deployment_id:
        return f"{base}/deployments/{deployment.deployment_id}"
    application_id = app.application_id if app is not None else getattr(event, "application_id", "")
    return f"{base}/applications/{application_id}" if application_id else base
