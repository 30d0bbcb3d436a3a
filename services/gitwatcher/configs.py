"""From `shared.config` to what the gitwatcher needs: watched repositories and app-config facts.

The only module of the service that knows the shape of the configuration
types, so the pure core and the loops depend on two small records instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from services.gitwatcher.decider import AppConfigFacts, ChainMatcher
from services.gitwatcher.eventplan import Replacement, ReplacementKind, Watcher
from services.gitwatcher.eventwatcher import EventRepository
from services.gitwatcher.pullrequests import PullRequests, github_repository_of
from services.gitwatcher.watcher import WatchedRepository
from shared.config import ControlConfig, load_application_config, load_event_watcher
from shared.config.documents import open_document
from shared.config.event_watcher import EventWatcherReplacement
from shared.errors import ConfigError
from shared.events.catalog import ConfigMention
from shared.events.streams import repository_stream
from shared.git import GitRepository
from shared.redaction import DESCRIPTION_CHARS, clip, printable
from shared.triggers import TriggerConfig

__all__ = [
    "event_repositories",
    "read_app_config",
    "read_app_watchers",
    "read_pipe_watchers",
    "watched_repositories",
]


def read_app_config(path: str, content: bytes) -> AppConfigFacts:
    """Parse an application config file read from git; ConfigError naming file and line."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    config = load_application_config(Path(path), text)
    spec = config.spec
    return AppConfigFacts(
        name=spec.name or Path(path).parent.name,
        kind=config.kind,
        labels=tuple(sorted(spec.labels.items())),
        description=_description(spec.description),
        mentions=tuple(
            ConfigMention(
                event=mention.event.removeprefix("EVENT_"),
                slack_users=mention.all_slack_users,  # `slack` (PipeCD's older name), `slackUsers`
                slack_groups=tuple(mention.slack_groups),
            )
            for mention in (spec.notification.mentions if spec.notification else ())
        ),
        trigger=TriggerConfig.from_on_commit(spec.trigger.on_commit),
        on_chain=not spec.trigger.on_chain.disabled,
        chain=tuple(
            ChainMatcher(name=m.name, kind=m.kind, labels=tuple(sorted(m.labels.items())))
            for m in (
                spec.post_sync.chain.applications if spec.post_sync and spec.post_sync.chain else ()
            )
        ),
    )


def _description(text: str) -> str:
    """`spec.description` as the API and the console show it: from a repository, so each
    line printable (no NUL or escape codes), and bounded."""
    lines = (printable(line.rstrip()) for line in text.strip().splitlines())
    return clip("\n".join(lines), DESCRIPTION_CHARS)


def read_app_watchers(
    application_id: str, app_dir: str, path: str, content: bytes
) -> list[Watcher]:
    """An application config's `spec.eventWatcher[]` (files relative to `app_dir`)."""
    config = load_application_config(Path(path), _text(path, content))
    return [
        Watcher(
            origin=f"app:{application_id}",
            name=entry.matcher.name,
            labels=tuple(sorted(entry.matcher.labels.items())),
            base_dir=app_dir,
            replacements=tuple(_replacement(r) for r in entry.handler.config.replacements),
            commit_message=entry.handler.config.commit_message,
            make_pull_request=entry.handler.config.make_pull_request,
        )
        for entry in config.spec.event_watcher
        if entry.handler.type == "GIT_UPDATE"
    ]


def read_pipe_watchers(path: str, content: bytes, commit_message: str = "") -> list[Watcher]:
    """A `.pipe/` file's events if it is `kind: EventWatcher` (files relative to the root)."""
    text = _text(path, content)
    _, kind = open_document(Path(path), text)
    if kind != "EventWatcher":
        return []
    spec = load_event_watcher(Path(path), text).spec
    return [
        Watcher(
            origin=path,
            name=event.name,
            labels=tuple(sorted(event.labels.items())),
            base_dir="",
            replacements=tuple(_replacement(r) for r in event.replacements),
            commit_message=commit_message,
        )
        for event in spec.events
    ]


def _replacement(replacement: EventWatcherReplacement) -> Replacement:
    # The loader checked that one is set; the first set one is used, as PipeCD does.
    kinds: tuple[tuple[ReplacementKind, str], ...] = (
        ("yamlField", replacement.yaml_field),
        ("jsonField", replacement.json_field),
        ("HCLField", replacement.hcl_field),
        ("regex", replacement.regex),
    )
    kind, expression = next(((k, e) for k, e in kinds if e), ("yamlField", ""))
    return Replacement(file=replacement.file, kind=kind, expression=expression)


def _text(path: str, content: bytes) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def watched_repositories(control: ControlConfig) -> list[WatchedRepository]:
    """The repositories of the control config, with webhook secrets read from their files.

    A secret file's relative path is relative to the control config's directory.
    """
    repositories = []
    for repo in control.spec.repositories:
        where = f"{control.path}: repository {repo.repo_id!r}"
        try:
            repository_stream(repo.repo_id)
        except ValueError:
            raise ConfigError(
                f"{where}: repoId must be lowercase letters, digits, '_' and '-' "
                "(it names the stream repository-<repoId>)"
            ) from None
        secret = repo.webhook_secret
        if repo.webhook_secret_file:
            secret_path = Path(repo.webhook_secret_file).expanduser()
            if not secret_path.is_absolute():
                secret_path = control.path.parent / secret_path
            try:
                secret = secret_path.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"{where}: webhookSecretFile {str(secret_path)!r}: {exc.strerror}"
                ) from None
        repositories.append(
            WatchedRepository(
                repository_id=repo.repo_id,
                remote=repo.remote,
                branch=repo.branch or "main",
                poll_interval_s=max(repo.poll_interval.seconds, 0.1),
                webhook_secret=secret,
            )
        )
    return repositories


def event_repositories(
    control: ControlConfig, gits: Mapping[str, tuple[GitRepository, str]]
) -> list[EventRepository]:
    """The event watcher's view of each watched repository (`gits`: id → clone and branch),
    with `eventWatcher.gitRepos[]`'s settings; a pull-request token file relative to the
    control config's directory."""
    settings = {repo.repo_id: repo for repo in control.spec.event_watcher.git_repos}
    remotes = {repo.repo_id: repo.remote for repo in control.spec.repositories}
    repositories = []
    for repository_id, (git, branch) in gits.items():
        entry = settings.get(repository_id)
        pulls = None
        if entry is not None and entry.pull_request is not None:
            where = f"{control.path}: eventWatcher.gitRepos {repository_id!r}: pullRequest"
            target = entry.pull_request.repository or github_repository_of(remotes[repository_id])
            if not target:
                raise ConfigError(f"{where}: set repository (owner/name); the remote names none")
            pulls = PullRequests(
                api_url=entry.pull_request.api_url,
                repository=target,
                token=_read_secret(control.path.parent, entry.pull_request.token_file, where),
            )
        repositories.append(
            EventRepository(
                repository_id=repository_id,
                git=git,
                branch=branch,
                commit_message=entry.commit_message if entry else "",
                includes=entry.includes if entry else (),
                excludes=entry.excludes if entry else (),
                pull_requests=pulls,
            )
        )
    return repositories


def _read_secret(base: Path, file: str, where: str) -> str:
    if not file:
        raise ConfigError(f"{where}: tokenFile is required")
    path = Path(file).expanduser()
    if not path.is_absolute():
        path = base / path
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{where}: tokenFile {str(path)!r}: {exc.strerror}") from None
