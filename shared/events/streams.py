"""The streams of the log, one function per category: the name of every stream spelled once.

A stream id is `<category>-<entity id>` (`shared.streams` checks the shape);
which events each stream holds is the family module of `shared/events/catalog/`
that bears its name.
Call these, never format a stream id inline: a category spelled twice is a
category that can drift apart.
"""

from __future__ import annotations

import hashlib

from shared.streams import stream_id

__all__ = [
    "analysis_stream",
    "apikey_stream",
    "application_config_stream",
    "application_stream",
    "chain_stream",
    "config_claim_stream",
    "deployment_stream",
    "drift_stream",
    "event_key_stream",
    "live_resources_stream",
    "name_stream",
    "notification_stream",
    "relay_stream",
    "repository_stream",
    "service_stream",
]


def application_stream(application_id: str) -> str:
    """`application-<id>`: registration, enable/disable, sync requests, deletion (the API)."""
    return stream_id("application", application_id)


def name_stream(name: str) -> str:
    """`appname-<name>`: who holds an application name, so it is registered only once."""
    return stream_id("appname", name)


def config_claim_stream(repository_id: str, path: str, config_filename: str) -> str:
    """`configclaim-<digest>`: who holds a config file. A digest, as paths may hold what
    stream ids may not (not `appconfig-`, which is what the gitwatcher observed)."""
    key = "\0".join((repository_id, path, config_filename))
    return stream_id("configclaim", hashlib.sha256(key.encode()).hexdigest()[:32])


def application_config_stream(application_id: str) -> str:
    """`appconfig-<id>`: the gitwatcher's `ApplicationConfigObserved` for one application."""
    return stream_id("appconfig", application_id)


def repository_stream(repository_id: str) -> str:
    """`repository-<id>`: commits observed, fetch failures and recoveries, webhooks refused."""
    return stream_id("repository", repository_id)


def chain_stream(chain_id: str) -> str:
    """`chain-<id>`: a deployment chain's blocks, its deployments' outcomes, its end."""
    return stream_id("chain", chain_id)


def deployment_stream(deployment_id: str) -> str:
    """`deployment-<id>`: trigger, plan, the executor's events, completion."""
    return stream_id("deployment", deployment_id)


def analysis_stream(analysis_id: str) -> str:
    """`analysis-<id>`: the executor's request, the analysis service's measures and verdict."""
    return stream_id("analysis", analysis_id)


def drift_stream(application_id: str) -> str:
    """`drift-<application id>`: sync state changes and cascade deletions (the drift service)."""
    return stream_id("drift", application_id)


def live_resources_stream(application_id: str) -> str:
    """`liveresources-<application id>`: the application's live objects, each time they
    change (the drift service; a stream of its own, so reading the newest is one row)."""
    return stream_id("liveresources", application_id)


def notification_stream(notification_id: str) -> str:
    """`notification-<id>`: one notification's scheduling and delivery attempts."""
    return stream_id("notification", notification_id)


def apikey_stream(key_id: str) -> str:
    """`apikey-<id>`: an API key's creation and revocation."""
    return stream_id("apikey", key_id)


def relay_stream(relay_name: str) -> str:
    """`relay-<name>`: events a relay could not publish."""
    return stream_id("relay", relay_name)


def event_key_stream(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    """`eventkey-<digest>`: every registration of one event name and label set, and what the
    event watcher did with each (PipeCD's event key: the name and the sorted labels)."""
    key = "\0".join((name, *(f"{k}={v}" for k, v in sorted(labels))))
    return stream_id("eventkey", hashlib.sha256(key.encode()).hexdigest()[:32])


def service_stream(service: str) -> str:
    """`service-<service name>`: its processes starting and stopping, every replica's."""
    return stream_id("service", service)
