"""From `shared.config` to what the gitwatcher needs: watched repositories and app-config facts.

The only module of the service that knows the shape of the configuration
types, so the pure core and the loops depend on two small records instead.
"""

from __future__ import annotations

from pathlib import Path

from services.gitwatcher.decider import AppConfigFacts, ChainMatcher
from services.gitwatcher.watcher import WatchedRepository
from shared.config import ControlConfig, load_application_config
from shared.errors import ConfigError
from shared.events.streams import repository_stream
from shared.triggers import TriggerConfig

__all__ = ["read_app_config", "watched_repositories"]


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
        trigger=TriggerConfig.from_on_commit(spec.trigger.on_commit),
        on_chain=not spec.trigger.on_chain.disabled,
        chain=tuple(
            ChainMatcher(name=m.name, kind=m.kind, labels=tuple(sorted(m.labels.items())))
            for m in (
                spec.post_sync.chain.applications if spec.post_sync and spec.post_sync.chain else ()
            )
        ),
    )


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
