"""Event watcher (stream `eventkey-<digest of name and labels>`, DESIGN §5)."""

from __future__ import annotations

from shared.events.base import Event


class EventRegistered(Event, tag="event_registered", frozen=True):
    """`slipway event register`: a named value (an image tag) for the event watcher to write.

    One stream per (name, labels), PipeCD's event key, so the newest registration
    of a key is the last `EventRegistered` of its stream: an older one is never
    written over a newer one. `event_id` is the registration's own id (the
    event's id in the log).
    """

    event_id: str
    name: str
    data: str
    labels: tuple[tuple[str, str], ...] = ()  # sorted by key
    contexts: tuple[tuple[str, str], ...] = ()  # PipeCD's `--contexts`: commit trailers
    commit_hash: str = ""  # the commit that produced the value (PipeCD's `--commit-hash`)
    registrar: str = ""


class EventHandled(Event, tag="event_handled", frozen=True):
    """The event watcher of one repository acted on one registration (the gitwatcher).

    `status`: `SUCCESS` (committed, `commit_hash`), `NO_CHANGE` (the files held
    the value already), `OUTDATED` (a newer registration of the key exists),
    `FAILURE` (`description` says which file or field), `NOT_WATCHED` (no watcher
    of the repository matches). `branch` is where the commit went (a new branch
    and `pull_request_url` with `makePullRequest`).
    """

    event_id: str
    repository_id: str
    status: str  # SUCCESS | NO_CHANGE | OUTDATED | FAILURE | NOT_WATCHED
    description: str = ""
    commit_hash: str = ""
    branch: str = ""
    files: tuple[str, ...] = ()
    watchers: tuple[str, ...] = ()  # `app:<application id>` or `.pipe/<file>` that matched
    pull_request_url: str = ""
