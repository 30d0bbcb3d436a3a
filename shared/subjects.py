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
    def __init__(self, prefix: str = "slipway") -> None:
        if not _PREFIX.match(prefix):
            raise ValueError(f"subject prefix {prefix!r} must be lowercase letters, digits and _")
        self.prefix = prefix

    # JetStream streams
    @property
    def events_stream(self) -> str:
        return f"{self.prefix.upper()}_EVENTS"

    @property
    def jobs_stream(self) -> str:
        return f"{self.prefix.upper()}_JOBS"

    # Events: <prefix>.evt.<category>.<stream_id>.<event_type>
    def event(self, stream_id: str, event_type: str) -> str:
        check_stream_id(stream_id)
        return f"{self.prefix}.evt.{category_of(stream_id)}.{stream_id}.{_token(event_type)}"

    @property
    def all_events(self) -> str:
        return f"{self.prefix}.evt.>"

    def events_of_category(self, category: str) -> str:
        return f"{self.prefix}.evt.{_token(category)}.>"

    def events_of_type(self, event_type: str) -> str:
        return f"{self.prefix}.evt.*.*.{_token(event_type)}"

    # Work queues, request/reply, live logs
    def job(self, kind: str, job_id: str) -> str:
        return f"{self.prefix}.job.{_token(kind)}.{_token(job_id)}"

    @property
    def all_jobs(self) -> str:
        return f"{self.prefix}.job.>"

    def request(self, service: str, verb: str) -> str:
        return f"{self.prefix}.req.{_token(service)}.{_token(verb)}"

    def stage_log(self, deployment_id: str) -> str:
        return f"{self.prefix}.log.{_token(deployment_id)}"

    @property
    def all_stage_logs(self) -> str:
        return f"{self.prefix}.log.*"

    def dead_letter(self, consumer: str) -> str:
        return f"{self.prefix}.dlq.{_token(consumer)}"


def _token(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"subject token {value!r} must be lowercase letters, digits, '_' or '-'")
    return value
