"""`slipway plan-preview`: what merging a branch would deploy, before it is merged.

For each application the head changes, compared with where it branched from
the base, by the gitwatcher's rule (its directory or `trigger.onCommit.paths`,
minus `ignores`, unless `disabled`: `shared.triggers`): the strategy the
planner would choose with the base branch as the running commit, the summary,
and the resource diff (added, removed, changed fields). PipeCD's plan-preview,
run locally against a clone, with no Slipway server needed.

Exit codes, for CI to trust: 0 every affected application was planned (also
when none is affected); 1 at least one could not be (each is reported with
its reason); 2 a usage or configuration error (a branch or commit that does
not exist); 3 the repository could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import posixpath
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

from shared.config import is_application_config_name, load_application_config
from shared.deploysource import DeploySource, ensure_commit, load_deploy_source
from shared.errors import ConfigError, Rejected
from shared.git import GitCache, GitError, GitRepository, redact, run_git
from shared.planning import Plan, TriggerInfo, make_plan
from shared.triggers import TriggerConfig, affected

__all__ = ["register", "run"]

EXIT_OK: Final = 0
EXIT_PLAN_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "plan-preview",
        help="show what merging a branch would deploy: strategy, summary and diff per app",
        description="Plan every application a branch (or commit) changes, against the base "
        "branch as the running state, without deploying anything.",
    )
    parser.add_argument("--repo", required=True, help="the config repository: a path or a URL")
    parser.add_argument("--base-branch", required=True, help="the branch it would merge into")
    head = parser.add_mutually_exclusive_group(required=True)
    head.add_argument("--head-branch", help="the branch to preview")
    head.add_argument("--head-commit", help="the commit to preview")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--cache-dir",
        help="keep the clone here between runs (default: a temporary directory)",
    )
    parser.set_defaults(handler=run)


@dataclass
class _Result:
    name: str
    config_path: str
    labels: dict[str, str] = field(default_factory=dict)
    plan: Plan | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
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
        }


@dataclass
class _Preview:
    base_branch: str
    base_commit: str
    head_ref: str
    head_commit: str
    results: list[_Result] = field(default_factory=list)

    @property
    def failures(self) -> list[_Result]:
        return [r for r in self.results if r.plan is None]


def run(args: argparse.Namespace) -> int:
    remote = _remote(args.repo)
    try:
        if args.cache_dir:
            preview = asyncio.run(_preview(GitCache(args.cache_dir), remote, args))
        else:
            with tempfile.TemporaryDirectory(prefix="slipway-plan-preview-") as tmp:
                preview = asyncio.run(_preview(GitCache(tmp), remote, args))
    except GitError as exc:
        if exc.kind in ("unreachable", "auth"):
            print(f"slipway: cannot fetch {redact(remote)}: {exc.reason}", file=sys.stderr)
            return EXIT_UNREACHABLE
        print(f"slipway: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.kind == "not_found" else EXIT_PLAN_FAILED
    if args.json:
        print(json.dumps(_as_json(preview), indent=2, ensure_ascii=False, default=str))
    else:
        print(_as_text(preview), end="")
    return EXIT_PLAN_FAILED if preview.failures else EXIT_OK


def _remote(repo: str) -> str:
    """A local directory as a file:// URL; anything else (a URL, `host:path`) as given."""
    path = Path(repo).expanduser()
    if "://" not in repo and path.exists():
        return path.resolve().as_uri()
    return repo


async def _preview(cache: GitCache, remote: str, args: argparse.Namespace) -> _Preview:
    repo = cache.repository(remote)
    await repo.fetch()
    base = await _resolve(
        repo, f"refs/heads/{args.base_branch}", f"base branch {args.base_branch!r}"
    )
    if args.head_branch:
        head_ref = args.head_branch
        head = await _resolve(repo, f"refs/heads/{head_ref}", f"head branch {head_ref!r}")
    else:
        head_ref = args.head_commit
        try:
            head = await ensure_commit(repo, args.head_commit)
        except GitError as exc:
            if exc.kind == "not_found":
                raise ConfigError(
                    f"head commit {args.head_commit!r} is not in {redact(remote)}"
                ) from exc
            raise
    preview = _Preview(args.base_branch, base, head_ref, head)
    # What the branch itself changed: from where it left the base (a three-dot diff).
    fork = (await run_git("merge-base", base, head, git_dir=repo.path)).decode().strip() or base
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
) -> _Result:
    app_dir, filename = posixpath.split(config_path)
    result = _Result(name=PurePosixPath(app_dir).name or config_path, config_path=config_path)
    try:
        new = await load_deploy_source(repo, head, app_dir, filename)
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


# Output ---------------------------------------------------------------------------------


def _as_json(preview: _Preview) -> dict[str, Any]:
    return {
        "base": {"branch": preview.base_branch, "commit": preview.base_commit},
        "head": {"ref": preview.head_ref, "commit": preview.head_commit},
        "results": [r.to_dict() for r in preview.results if r.plan is not None],
        "failures": [r.to_dict() for r in preview.failures],
    }


def _as_text(preview: _Preview) -> str:
    head = preview.head_commit[:12]
    lines = [
        f"Plan preview of {preview.head_ref} ({head}) against {preview.base_branch} "
        f"({preview.base_commit[:12]})",
        "",
    ]
    planned = [r for r in preview.results if r.plan is not None]
    if not preview.results:
        lines += [
            "No applications are changed: merging this will not trigger any deployment.",
            "",
        ]
        return "\n".join(lines)
    if planned:
        count = f"{len(planned)} application" + ("s" if len(planned) != 1 else "")
        lines += [f"Here are plan-preview for {count}:", ""]
    for index, result in enumerate(planned, 1):
        assert result.plan is not None
        decision = result.plan.decision
        lines += [
            f"{index}. application: {result.name} ({result.config_path})",
            f"  sync strategy: {decision.strategy.upper()}",
            f"  summary: {decision.summary}",
            f"  reason: {decision.reason}",
            "  stages: " + " → ".join(s.name for s in result.plan.stages if s.visible),
            "  details:",
        ]
        details = decision.diff.render() if decision.diff is not None else "(not compared)\n"
        lines += [f"    {line}" if line else "" for line in details.rstrip("\n").split("\n")]
        lines.append("")
    if preview.failures:
        count = f"{len(preview.failures)} application" + ("s" if len(preview.failures) != 1 else "")
        lines += [f"NOTE: {count} could not be planned:", ""]
        for index, result in enumerate(preview.failures, 1):
            lines += [f"{index}. application: {result.name} ({result.config_path})",
                      f"  reason: {result.error}", ""]  # fmt: skip
    return "\n".join(lines)
