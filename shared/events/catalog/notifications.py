"""Notifications: scheduled, attempts failed, delivered or given up (stream
`notification-<notification_id>`, DESIGN §9).
"""

from __future__ import annotations

from datetime import datetime

from shared.events.base import Event
from shared.events.vocabulary import (
    ReceiverKind,
)


class NotificationScheduled(Event, tag="notification_scheduled", frozen=True):
    """An event made a notification for a receiver; it will be sent (the stream's first event).

    `notification_id` is derived from the source event and the receiver, and this
    event is appended in the notifier consumer's transaction, so each (event,
    receiver) is scheduled once. `body` is exactly what is POSTed on every attempt.
    """

    notification_id: str
    receiver: str
    receiver_kind: ReceiverKind
    notification_type: str  # PipeCD's type without EVENT_, e.g. DEPLOYMENT_FAILED
    source_event_id: str
    source_stream_id: str
    body: str  # JSON
    application_id: str = ""
    deployment_id: str = ""


class NotificationAttemptFailed(Event, tag="notification_attempt_failed", frozen=True):
    """One attempt failed; another follows after `retry_in_s`."""

    notification_id: str
    attempt: int
    error: str
    retry_in_s: float
    status_code: int = 0  # 0: no HTTP response (connection refused, timeout)


class NotificationDelivered(Event, tag="notification_delivered", frozen=True):
    """The receiver accepted the notification (a 2xx answer)."""

    notification_id: str
    attempt: int
    status_code: int
    delivered_at: datetime


class NotificationFailed(Event, tag="notification_failed", frozen=True):
    """The notification was given up: attempts ran out or the receiver refused it for good."""

    notification_id: str
    attempts: int
    error: str  # the last one
    status_code: int = 0
