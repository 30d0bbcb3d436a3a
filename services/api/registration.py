"""What registering or syncing an application needs from the world: refuse what cannot work.

The decider checks a registration's shape; this checks it against the control
config and the repository (the I/O edge), so that `slipway app add` refuses
an application that could never be deployed instead of accepting it silently:

- the repository must be one of the control config's (else nothing watches it);
- the platform provider must resolve by `platform_provider_of`, the rule the
  executor and the drift service use (the named one, else the config's first);
- unless `verify` is false, the config file must exist at the watched
  branch's head (fetched into the plan-preview clone cache).

Without a control config (`SLIPWAY_CONTROL_CONFIG` unset) there is nothing to
check against. That no two applications share a config file is the log's
rule (`decider.decide_claim`), checked in the registration's transaction.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import Final

from services.api.decider import InvalidCommand
from services.api.deps import Deps
from services.api.errors import ErrorReply
from services.api.schemas import RegisterApplicationRequest
from shared.applications import Application
from shared.config import is_application_config_name
from shared.config.control import platform_provider_of
from shared.errors import ConfigError
from shared.git import GitError, redact

__all__ = ["check_registration_target", "check_syncable", "git_failure"]

_MAX_NAMED: Final = 5


async def check_registration_target(api: Deps, body: RegisterApplicationRequest) -> None:
    """Raise `InvalidCommand` (400, naming the field) when `body` could never be deployed."""
    control = api.plan_preview
    if control is None:
        return
    if body.repository_id not in control.repositories:
        raise InvalidCommand(
            "repository_id",
            f"repository_id {body.repository_id!r} is not in the API's control config "
            f"(known: {_known(control.repositories)}): nothing would watch it",
        )
    if control.platform_providers is not None:
        try:
            platform_provider_of(
                body.platform_provider, {name: name for name in control.platform_providers}
            )
        except ConfigError as exc:
            raise InvalidCommand("platform_provider", f"platform_provider: {exc}") from exc
    if body.verify:
        await _check_config_at_head(api, body)


async def _check_config_at_head(api: Deps, body: RegisterApplicationRequest) -> None:
    assert api.plan_preview is not None
    remote, branch = api.plan_preview.repositories[body.repository_id]
    repo = api.plan_preview.cache.repository(remote)
    config_path = _config_path(body)
    try:
        await repo.fetch()
        head = await repo.branch_head(branch or "main")
        content = await repo.read_file(head, config_path)
        if content is not None:
            return
        here = [] if body.path == "." else await repo.list_tree(head, body.path)
    except GitError as exc:
        raise git_failure(remote, exc) from exc
    # What the directory does hold, so a wrong config_filename is a one-line fix.
    found = sorted(
        repr(posixpath.basename(p))
        for p in here
        if posixpath.dirname(p) == body.path and is_application_config_name(posixpath.basename(p))
    )[:_MAX_NAMED]
    hint = f" (the directory has {', '.join(found)}: set config_filename)" if found else ""
    raise InvalidCommand(
        "path",
        f"no application config {config_path!r} at the head of {branch or 'main'} "
        f"({head[:8]}) of repository {body.repository_id}{hint}; register with verify: false "
        "(`--no-verify`) to skip this check",
    )


def check_syncable(api: Deps, app: Application) -> None:
    """A 409 when a sync of `app` could never become a deployment: its repository is not watched.

    (A disabled application is the decider's refusal.)
    """
    control = api.plan_preview
    if control is not None and app.repository_id not in control.repositories:
        raise ErrorReply(
            409,
            "repository_not_watched",
            f"application {app.name} cannot be synced: its repository {app.repository_id!r} "
            f"is not in the control config (known: {_known(control.repositories)}), so "
            "nothing watches it",
            application_id=app.application_id,
        )


def git_failure(remote: str, exc: GitError) -> ErrorReply:
    """The answer when a control-config repository cannot be read: 503 if it may pass, else 400."""
    if exc.kind in ("unreachable", "auth"):
        return ErrorReply(
            503,
            "unavailable",
            f"cannot fetch {redact(remote)}: {exc.reason}",
            headers={"Retry-After": "5"},
        )
    return ErrorReply(400, "invalid_request", f"git: {exc.reason}")


def _config_path(body: RegisterApplicationRequest) -> str:
    return posixpath.normpath(posixpath.join(body.path, body.config_filename))


def _known(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"
