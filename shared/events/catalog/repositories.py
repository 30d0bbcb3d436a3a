"""Repositories: commits observed, fetch failures and recoveries, rejected webhooks and
the application configs found (stream `repository-<repository_id>`).
"""

from __future__ import annotations

import msgspec

from shared.events.base import Event
from shared.events.vocabulary import (
    CommitSource,
    WebhookProvider,
)


class CommitObserved(Event, tag="commit_observed", frozen=True):
    """The watched branch moved to a new head; appended once per commit by any replica."""

    repository_id: str
    branch: str
    commit_hash: str
    previous_hash: str = ""
    author: str = ""
    message: str = ""
    committed_at: str = ""  # ISO 8601, as git reports it
    changed_paths: tuple[str, ...] = ()
    source: CommitSource = CommitSource.POLL


class RepositoryFetchFailed(Event, tag="repository_fetch_failed", frozen=True):
    """Fetching a repository failed; the watcher retries after `retry_in_s`."""

    repository_id: str
    reason: str
    attempt: int = 1
    retry_in_s: float = 0.0


class RepositoryRecovered(Event, tag="repository_recovered", frozen=True):
    """A repository is fetched again after failed attempts."""

    repository_id: str
    after_attempts: int = 1


class WebhookRejected(Event, tag="webhook_rejected", frozen=True):
    """A webhook was refused (bad signature, unknown repository, malformed body)."""

    repository_id: str
    provider: WebhookProvider
    reason: str
    remote_addr: str = ""


class ApplicationConfigDiscovered(Event, tag="application_config_discovered", frozen=True):
    """A config file in a watched repository that no registered application points at."""

    repository_id: str
    path: str
    config_filename: str
    name: str
    kind: str = "KubernetesApp"
    labels: tuple[tuple[str, str], ...] = ()
    commit_hash: str = ""


class ApplicationConfigRemoved(Event, tag="application_config_removed", frozen=True):
    """A config file `ApplicationConfigDiscovered` announced is no longer at the watched
    branch's head (deleted, moved or renamed): it is no unregistered application any more,
    and is announced again if it comes back."""

    repository_id: str
    path: str
    config_filename: str
    commit_hash: str = ""


class ConfigMention(msgspec.Struct, frozen=True, kw_only=True):
    """One `spec.notification.mentions[]` entry of an application config: whom Slack
    mentions on notifications of `event` (a PipeCD type without `EVENT_`, or "*")."""

    event: str
    slack_users: tuple[str, ...] = ()
    slack_groups: tuple[str, ...] = ()


class ApplicationConfigObserved(Event, tag="application_config_observed", frozen=True):
    """A registered application's config file, read at a commit of its repository.

    Stream `appconfig-<application_id>`, owned by the gitwatcher. Appended when
    the config's labels, notification mentions or description differ from the
    ones last recorded for the application (and once for an application not
    read before), so that readers merge the labels with the registration's
    (`shared.labels.merge_labels`), the notifier mentions whom it names, and
    the API and console show `spec.description` (clipped to `DESCRIPTION_CHARS`).
    """

    repository_id: str
    application_id: str
    commit_hash: str
    labels: tuple[tuple[str, str], ...] = ()
    mentions: tuple[ConfigMention, ...] = ()
    description: str = ""
