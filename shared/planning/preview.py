"""Plan preview: what merging a branch would deploy, computed from a clone of the repository.

For each application the head changes, compared with where it branched from
the base, by the gitwatcher's rule (its directory or `trigger.onCommit.paths`,
minus `ignores`, unless `disabled`: `shared.triggers`): the strategy the
planner would choose with the base branch as the running commit, the summary,
and the resource diff (added, removed, changed fields). PipeCD's plan-preview.

This is the git edge of planning (the rest of `shared.planning` is pure): it
fetches, reads the configs at both commits and hands them to `make_plan`.
`slipway plan-preview` runs it against a local clone and the API's
`POST /plan-preview` against its own; both print `Preview.to_dict()`.

Errors: `ConfigError` for a base branch, head branch or head commit that is
not in the repository; `GitError` when the repository cannot be fetched
(`kind` "unreachable" or "auth") or git fails otherwise.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from shared.config import is_application_config_name, load_application_config
from shared.deploysource import DeploySource, ensure_commit, load_deploy_source
from shared.errors import ConfigError, Rejected
from shared.git import (
    GitCache,
    GitError,
    GitRepository,
    branch_name_problem,
    redact,
    run_git,
)
from shared.planning import Plan, TriggerInfo, make_plan
from shared.triggers import TriggerConfig, affected

__all__ = ["ApplicationPreview", "Preview", "compute_preview", "remote_url"]


@dataclass
class ApplicationPreview:
    """One affected application: its plan, or why it could not be planned (`error`)."""

    name: str
    config_path: str
    labels: dict[str, str] = field(default_factory=dict)
    plan: Plan | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of one application's preview."""
        out: dict[str, Any] = {
            "application": self.name,
            "config_path": self.config_path,
            "labels": self.labels,
        }
        if self.plan is None:
            return {**out, "error": self.error}
        decision = self.plan.decision
        return {
            **out,
            "strategy": str(decision.strategy),
            "rule": str(decision.rule),
            "reason": decision.reason,
            "summary": decision.summary,
            "stages": [
                {"id": s.id, "name": s.name, "visible": s.visible} for s in self.plan.stages
            ],
            "diff": decision.diff.to_dict() if decision.diff is not None else None,
            # The diff as PipeCD's plan details print it: the structured `diff` cannot
            # tell an absent field from a null one, so whoever shows it reads this.
            "details": decision.diff.render() if decision.diff is not None else None,
        }


@dataclass
class Preview:
    """The base and head compared, and every application the head changes."""

    base_branch: str
    base_commit: str
    head_ref: str
    head_commit: str
    results: list[ApplicationPreview] = field(default_factory=list)

    @property
    def failures(self) -> list[ApplicationPreview]:
        """The applications whose plan could not be made."""
        return [r for r in self.results if r.plan is None]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: what `slipway plan-preview --json` prints and the API answers."""
        return {
            "base": {"branch": self.base_branch, "commit": self.base_commit},
            "head": {"ref": self.head_ref, "commit": self.head_commit},
            "results": [r.to_dict() for r in self.results if r.plan is not None],
            "failures": [r.to_dict() for r in self.failures],
        }


def remote_url(repo: str) -> str:
    """A local directory as a file:// URL; anything else (a URL, `host:path`) as given."""
    path = Path(repo).expanduser()
    if "://" not in repo and path.exists():
        return path.resolve().as_uri()
    return repo


async def compute_preview(
    cache: GitCache,
    remote: str,
    *,
    base_branch: str,
    head_branch: str | None = None,
    head_commit: str | None = None,
) -> Preview:
    """Fetch `remote` into `cache` and plan what merging the head into `base_branch` deploys.

    Give exactly one of `head_branch` and `head_commit`.
    """
    if (head_branch is None) == (head_commit is None):
        raise ValueError("give exactly one of head_branch and head_commit")
    for what, branch in (("base branch", base_branch), ("head branch", head_branch)):
        if branch is not None and (problem := branch_name_problem(branch)):
            raise ConfigError(f"{what}: {problem}")
    repo = cache.repository(remote)
    await repo.fetch()
    base = await _resolve(repo, f"refs/heads/{base_branch}", f"base branch {base_branch!r}")
    if head_branch is not None:
        head_ref = head_branch
        head = await _resolve(repo, f"refs/heads/{head_ref}", f"head branch {head_ref!r}")
    else:
        assert head_commit is not None
        head_ref = head_commit
        try:
            head = await ensure_commit(repo, head_commit)
        except GitError as exc:
            if exc.kind == "not_found":
                raise ConfigError(
                    f"head commit {head_commit!r} is not in {redact(remote)}"
                ) from exc
            raise
    preview = Preview(base_branch, base, head_ref, head)
    # What the branch itself changed: from where it left the base (a three-dot diff).
    fork = (
        await run_git("merge-base", "--end-of-options", base, head, git_dir=repo.path)
    ).decode().strip() or base
    changed = await repo.changed_paths(fork, head) if fork != head else []
    message = (await repo.commit(head)).message
    for config_path in await _affected(repo, head, changed):
        preview.results.append(await _plan_one(repo, config_path, base, head, message))
    return preview


async def _resolve(repo: GitRepository, ref: str, what: str) -> str:
    try:
        return await repo.resolve(ref)
    except GitError as exc:
        if exc.kind == "not_found":
            raise ConfigError(f"{what} does not exist in {redact(repo.remote)}") from exc
        raise


async def _affected(repo: GitRepository, head: str, changed: Sequence[str]) -> list[str]:
    """Config files at `head` whose application the changed paths touch.

    The gitwatcher's rule (`shared.triggers.affected`), so the preview lists
    exactly the applications that merging would deploy.
    """
    if not changed:
        return []
    configs = [
        p for p in await repo.list_tree(head) if is_application_config_name(posixpath.basename(p))
    ]
    contents = await repo.read_files(head, configs)
    return [
        config_path
        for config_path in configs
        if affected(
            posixpath.dirname(config_path),
            _trigger_config(config_path, contents[config_path]),
            changed,
        )
    ]


def _trigger_config(config_path: str, content: bytes | None) -> TriggerConfig:
    """`spec.trigger.onCommit` of a config file; the defaults when it cannot be loaded.

    A broken config still counts by directory (as in the gitwatcher), so the
    preview reports the problem instead of leaving the application out.
    """
    if content is None:
        return TriggerConfig()
    try:
        config = load_application_config(Path(config_path), content.decode("utf-8-sig", "replace"))
    except ConfigError:
        return TriggerConfig()  # reported when the application is planned
    return TriggerConfig.from_on_commit(config.spec.trigger.on_commit)


async def _plan_one(
    repo: GitRepository, config_path: str, base: str, head: str, message: str
) -> ApplicationPreview:
    app_dir, filename = posixpath.split(config_path)
    result = ApplicationPreview(
        name=PurePosixPath(app_dir).name or config_path, config_path=config_path
    )
    try:
        new = await load_deploy_source(repo, head, app_dir, filename, references=True)
        result.name = new.config.spec.name or result.name
        result.labels = dict(new.config.spec.labels)
        old, old_error = await _running(repo, base, app_dir, filename)
        result.plan = make_plan(
            new.spec,
            TriggerInfo(commit_message=message),
            new.manifests,
            list(old.manifests) if old is not None else ([] if not old_error else None),
            running_commit=base if old is not None or old_error else "",
            running_error=old_error,
        )
    except (ConfigError, Rejected) as exc:
        result.error = str(exc)
    except GitError as exc:
        result.error = f"git: {exc.reason}"
    return result


async def _running(
    repo: GitRepository, base: str, app_dir: str, filename: str
) -> tuple[DeploySource | None, str]:
    """The application at the base: (None, "") when it is new there, (None, why) when broken."""
    if await repo.read_file(base, posixpath.join(app_dir, filename)) is None:
        return None, ""
    try:
        return await load_deploy_source(repo, base, app_dir, filename), ""
    except ConfigError as exc:
        return None, str(exc)
