"""Service processes starting and stopping (stream `service-<service name>`,
`shared/lifecycle.py`).
"""

from __future__ import annotations

from shared.events.base import Event


class ServiceStarted(Event, tag="service_started", frozen=True):
    """A service process is ready: connected, its components running (PipeCD's PIPED_STARTED).

    Many replicas and restarts share the stream (appended with no version check);
    `instance` tells them apart. No settings, no secrets.
    """

    service: str
    instance: str
    version: str


class ServiceStopped(Event, tag="service_stopped", frozen=True):
    """A service process stopped (PipeCD's PIPED_STOPPED), recorded after its components
    finished or were cancelled: `reason` is why it began to stop (a signal, a crashed
    component, every component returning); `crashed` when that is a failure."""

    service: str
    instance: str
    version: str
    reason: str
    crashed: bool = False
