"""An application's config and rendered manifests at one commit: what a plan is made from.

The I/O half of planning, shared by the planner service and `slipway
plan-preview` (PipeCD calls it the deploy source): check the commit out of a
`GitRepository`, load the application config, render its manifests. Errors
name files relative to the repository root, never the temporary checkout.

- `ConfigError` (a `ConfigFileError` with file:line when it has one): the
  config or the manifests are wrong at that commit — a person must fix them;
- `GitError` (`Unavailable`): git could not give us the commit; its `kind`
  says whether waiting can help (`unreachable`, `other`) or not (`not_found`,
  `auth`).

`register_secrets` tells the process's redactor (`shared.redaction`) the secret
values a deploy source holds — its Secrets' data and its SCRIPT_RUN stages'
`secretEnv` — so they are masked wherever they show up later (a Kubernetes API
error, a script's output, a tool's stderr). Only for commits Slipway deploys
(merged): a pushed branch (plan preview) must not choose what every log masks.
"""

from __future__ import annotations

import asyncio
import posixpath
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from shared.config import (
    ApplicationConfig,
    ConfigFileError,
    ConfigFileErrors,
    Manifest,
    ScriptRunOptions,
    check_routing,
    load_application_config,
    render_manifests_async,
)
from shared.config.repo_files import inside_repository, resolved_root, unchanging
from shared.config.secret_targets import (
    Reveal,
    check_no_placeholders,
    fill_targets,
    has_targets,
)
from shared.errors import ConfigError
from shared.git import GitError, GitRepository
from shared.planning.spec import PlanningSpec, spec_from_config
from shared.redaction import REDACTOR

__all__ = [
    "DeploySource",
    "Reveal",
    "config_path_of",
    "ensure_commit",
    "load_deploy_source",
    "register_secrets",
]


@dataclass(frozen=True)
class DeploySource:
    """One application at one commit: its config, where it lives, what it deploys."""

    commit: str
    config_path: str
    """The config file, relative to the repository root."""
    config: ApplicationConfig
    spec: PlanningSpec
    manifests: tuple[Manifest, ...]
    revealed: tuple[str, ...] = ()
    """The decrypted secrets put into the manifests (only when loaded with `Reveal`)."""
    config_text: str = ""
    """The config file as the repository has it (the planner records it, redacted)."""


def config_path_of(app_path: str, config_filename: str) -> str:
    """The config file's path from the repository root, normalised."""
    return posixpath.normpath(posixpath.join(app_path.strip("/") or ".", config_filename))


async def ensure_commit(repo: GitRepository, commit: str) -> str:
    """The full hash of `commit`, fetching once if the clone does not have it yet.

    A commit the remote does not have either is a `GitError` of kind `not_found`.
    """
    if repo.cloned:
        try:
            return await repo.resolve(commit)
        except GitError as exc:
            if exc.kind != "not_found":
                raise
    await repo.fetch(unless_present=commit)
    return await repo.resolve(commit)


@contextmanager
def commit_unavailable_as_config_error(commit: str) -> Iterator[None]:
    """A commit git cannot give (gone from the remote, or no access) is a ConfigError.

    Retrying will not bring it back: the config or the remote must change, so
    it fails the work at once instead of being retried as an outage.
    """
    try:
        yield
    except GitError as exc:
        if exc.kind in ("not_found", "auth"):
            raise ConfigError(f"git cannot give commit {commit[:12]}: {exc}") from exc
        raise


async def load_deploy_source(
    repo: GitRepository,
    commit: str,
    app_path: str,
    config_filename: str,
    *,
    references: bool = False,
    reveal: Reveal | None = None,
) -> DeploySource:
    """Load the config of the application at `app_path` and render its manifests at `commit`.

    With `references` (the planner and plan preview, for what is about to be deployed),
    what the config refers to is checked too (`.pipe/` templates and
    their `appArgs`, traffic routing against the manifests), so a deployment that would
    fail on it fails at planning, before anything is rolled out. Without (a running
    commit, the executor and drift detection): the config as it is, already planned.

    `encryption.decryptionTargets` and `attachment.targets` are filled in a private
    copy of the checkout (`shared.config.secret_targets`): with the plaintexts when
    `reveal` is given (the executor, drift), else masked (the planner, plan preview).
    """
    config_path = config_path_of(app_path, config_filename)
    async with repo.read_only_checkout(commit) as tree:
        # Only read while held: what is read of it (`.pipe/` templates) may be remembered.
        with _relative_to(tree), unchanging(tree):
            file = tree / config_path
            if not file.is_file():
                raise ConfigFileError(
                    config_path, 0, 0, "", f"no application config here at commit {commit[:12]}"
                )
            inside_repository(file, tree, f"the application config {config_path}")
            config_text = file.read_text(encoding="utf-8", errors="replace")
            config = load_application_config(
                file, config_text, references=references, repo_root=tree
            )
            revealed: tuple[str, ...] = ()
            if has_targets(config):
                with tempfile.TemporaryDirectory(prefix="slipway-targets-") as scratch:
                    root, app_dir, revealed = await asyncio.to_thread(
                        fill_targets, tree, file.parent, config, reveal, Path(scratch)
                    )
                    with _relative_to(root):
                        manifests = await render_manifests_async(app_dir, config, repo_root=root)
            else:
                manifests = await render_manifests_async(file.parent, config, repo_root=tree)
            check_no_placeholders(manifests)
            if references:
                check_routing(config, manifests)
    # The config as loaded names the checkout, which is gone now: keep the
    # repository-relative path instead.
    config = msgspec.structs.replace(config, path=Path(config_path))
    return DeploySource(
        commit=commit,
        config_path=config_path,
        config=config,
        spec=spec_from_config(config, config_path),
        manifests=tuple(manifests),
        revealed=revealed,
        config_text=config_text,
    )


def register_secrets(source: DeploySource) -> None:
    """Register the secret values of `source` (a merged commit's) with the process's redactor."""
    for manifest in source.manifests:
        if manifest.kind != "Secret":
            continue
        data, string_data = manifest.body.get("data"), manifest.body.get("stringData")
        if isinstance(data, Mapping):
            REDACTOR.add(*(str(v) for v in data.values() if v), encoded=True)
        if isinstance(string_data, Mapping):
            REDACTOR.add(*(str(v) for v in string_data.values() if v))
    REDACTOR.add(*source.revealed, encoded=True)
    for stage in source.config.spec.stages:
        if isinstance(stage.with_, ScriptRunOptions):
            REDACTOR.add(*stage.with_.secret_env.values())


@contextmanager
def _relative_to(tree: Path) -> Iterator[None]:
    """Rewrite paths inside the temporary checkout in any ConfigError to repository paths."""
    prefixes = (f"{tree}/", f"{resolved_root(tree)}/")

    def strip(text: str) -> str:
        for prefix in prefixes:
            text = text.replace(prefix, "")
        return text

    try:
        yield
    except ConfigFileError as exc:
        raise ConfigFileErrors.of(
            [
                ConfigFileError(strip(e.file), e.line, e.column, e.field_path, strip(e.problem))
                for e in exc.errors
            ]
        ) from exc
    except ConfigError as exc:
        raise ConfigError(strip(str(exc))) from exc
