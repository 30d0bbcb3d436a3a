"""The gitwatcher's Prometheus counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["Metrics"]


class Metrics:
    """The service's Prometheus counters (on a private registry when none is given)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.commits = Counter(
            "slipway_gitwatcher_commits_observed",
            "commits this replica recorded as CommitObserved",
            ["repository"],
            registry=registry,
        )
        self.triggers = Counter(
            "slipway_gitwatcher_deployments_triggered",
            "DeploymentTriggered appends made by this replica (a replica's duplicate included)",
            ["trigger"],
            registry=registry,
        )
        self.fetch_failures = Counter(
            "slipway_gitwatcher_fetch_failures",
            "failed fetches, every attempt",
            ["repository", "kind"],
            registry=registry,
        )
        self.conflicts = Counter(
            "slipway_gitwatcher_conflicts",
            "appends to a repository stream that lost a race with another replica",
            ["repository"],
            registry=registry,
        )
        self.webhooks = Counter(
            "slipway_gitwatcher_webhooks",
            "webhook deliveries by outcome",
            ["provider", "outcome"],
            registry=registry,
        )
        self.events_handled = Counter(
            "slipway_gitwatcher_events_handled",
            "event watcher outcomes (SUCCESS, NO_CHANGE, OUTDATED, FAILURE, NOT_WATCHED)",
            ["repository", "status"],
            registry=registry,
        )
        self.push_refusals = Counter(
            "slipway_gitwatcher_event_push_refusals",
            "event watcher pushes refused because the branch moved (the write is redone)",
            ["repository"],
            registry=registry,
        )
