"""Every NATS subject and stream name Slipway uses, spelled in one place (DESIGN §4).

A `Subjects` with another prefix gives a disjoint namespace: tests use one
each, and two Slipway installations could share a NATS cluster the same way.
"""

from __future__ import annotations

import re

from shared.streams import category_of, check_stream_id

_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TOKEN = re.compile(r"^[a-z0-9_-]+$")


class Subjects:
    """Every NATS subject and stream name, under one prefix (one deployment of Slipway)."""

    def __init__(self, prefix: str = "slipway") -> None:
        if not _PREFIX.match(prefix):
            raise ValueError(f"subject prefix {prefix!r} must be lowercase letters, digits and _")
        self.prefix = prefix

    # JetStream streams
    @property
    def events_stream(self) -> str:
        """The JetStream stream of events."""
        return f"{self.prefix.upper()}_EVENTS"

    @property
    def jobs_stream(self) -> str:
        """The JetStream stream of work queues."""
        return f"{self.prefix.upper()}_JOBS"

    # Events: <prefix>.evt.<category>.<stream_id>.<event_type>
    def event(self, stream_id: str, event_type: str) -> str:
        """The subject of one event: `<prefix>.evt.<category>.<stream_id>.<event_type>`."""
        check_stream_id(stream_id)
        return f"{self.prefix}.evt.{category_of(stream_id)}.{stream_id}.{_token(event_type)}"

    @property
    def all_events(self) -> str:
        """A filter for every event."""
        return f"{self.prefix}.evt.>"

    def events_of_category(self, category: str) -> str:
        """A filter for the events of one stream category."""
        return f"{self.prefix}.evt.{_token(category)}.>"

    def events_of_type(self, event_type: str) -> str:
        """A filter for the events of one type."""
        return f"{self.prefix}.evt.*.*.{_token(event_type)}"

    # Work queues, request/reply, live logs
    def job(self, kind: str, job_id: str) -> str:
        """The subject of one job in a work queue."""
        return f"{self.prefix}.job.{_token(kind)}.{_token(job_id)}"

    @property
    def all_jobs(self) -> str:
        """A filter for every job."""
        return f"{self.prefix}.job.>"

    def request(self, service: str, verb: str) -> str:
        """The subject of a service's request/reply verb."""
        return f"{self.prefix}.req.{_token(service)}.{_token(verb)}"

    def stage_log(self, deployment_id: str) -> str:
        """The subject of a deployment's live stage log."""
        return f"{self.prefix}.log.{_token(deployment_id)}"

    @property
    def all_stage_logs(self) -> str:
        """A filter for every deployment's live stage log."""
        return f"{self.prefix}.log.*"

    def dead_letter(self, consumer: str) -> str:
        """The subject of a consumer's dead letters."""
        return f"{self.prefix}.dlq.{_token(consumer)}"


def _token(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"subject token {value!r} must be lowercase letters, digits, '_' or '-'")
    return value
