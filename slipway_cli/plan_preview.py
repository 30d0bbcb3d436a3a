"""`slipway plan-preview`: what merging a branch would deploy, before it is merged.

For each application the head changes: the strategy the planner would choose
with the base branch as the running commit, the summary, and the resource
diff (`shared.planning.preview` computes it). Two ways to run it, with the
same output and exit codes:

- `--repo PATH|URL`: here, against a clone of its own, no Slipway server needed;
- `--repository-id ID`: by the API (`POST /api/v1/plan-preview` at
  `--api-url`/`$SLIPWAY_API_URL`, key from `$SLIPWAY_API_KEY`), for a repository
  of its control config: CI needs no clone and no git credentials.

Exit codes, for CI to trust: 0 every affected application was planned (also
when none is affected); 1 at least one could not be (each is reported with
its reason), or the API refused the request (a key without the right role);
2 a usage or configuration error (a branch or commit that does not exist, a
repository id the server does not know); 3 the repository could not be
reached (or the API, or it cannot preview at all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Mapping
from typing import Any, Final

from shared.errors import ConfigError
from shared.git import GitCache, GitError, redact
from shared.planning.preview import Preview, compute_preview, remote_url
from slipway_cli.command import common_options, fail, run_with_client
from slipway_client import ApiClient, ApiError

__all__ = ["register", "run"]

EXIT_OK: Final = 0
EXIT_PLAN_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway plan-preview` (what merging a branch would deploy) to the parser."""
    parser = subparsers.add_parser(
        "plan-preview",
        parents=[common_options()],
        help="show what merging a branch would deploy: strategy, summary and diff per app",
        description="Plan every application a branch (or commit) changes, against the base "
        "branch as the running state, without deploying anything: here from a clone "
        "(--repo), or by the API for a repository of its control config (--repository-id).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--repo", help="the config repository, a path or a URL: preview here, without a server"
    )
    source.add_argument(
        "--repository-id",
        help="a repository id of the server's control config: the API previews it",
    )
    parser.add_argument(
        "--base-branch",
        help="the branch it would merge into (required with --repo; with --repository-id "
        "the default is the branch the control config watches)",
    )
    head = parser.add_mutually_exclusive_group(required=True)
    head.add_argument("--head-branch", help="the branch to preview")
    head.add_argument("--head-commit", help="the commit to preview")
    parser.add_argument(
        "--cache-dir",
        help="with --repo: keep the clone here between runs (default: a temporary directory)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Preview a branch's plans over the API (`--repository-id`) or from a local repo."""
    if args.repository_id is not None:
        return run_with_client(_run_over_api)(args)
    if not args.base_branch:
        fail("--base-branch is required with --repo")
        return EXIT_USAGE
    remote = remote_url(args.repo)
    try:
        if args.cache_dir:
            preview = asyncio.run(_preview_locally(GitCache(args.cache_dir), remote, args))
        else:
            with tempfile.TemporaryDirectory(prefix="slipway-plan-preview-") as tmp:
                preview = asyncio.run(_preview_locally(GitCache(tmp), remote, args))
    except GitError as exc:
        if exc.kind in ("unreachable", "auth"):
            fail(f"cannot fetch {redact(remote)}: {exc.reason}")
            return EXIT_UNREACHABLE
        fail(str(exc))
        return EXIT_USAGE if exc.kind == "not_found" else EXIT_PLAN_FAILED
    return _report(preview.to_dict(), args.json)


async def _preview_locally(cache: GitCache, remote: str, args: argparse.Namespace) -> Preview:
    return await compute_preview(
        cache,
        remote,
        base_branch=args.base_branch,
        head_branch=args.head_branch,
        head_commit=args.head_commit,
    )


def _run_over_api(client: ApiClient, args: argparse.Namespace) -> int:
    """The API's preview, its refusals mapped to the exit codes of a preview run here."""
    try:
        preview = client.plan_preview(
            repository_id=args.repository_id,
            base_branch=args.base_branch,
            head_branch=args.head_branch,
            head_commit=args.head_commit,
        )
    except ApiError as exc:
        if exc.status in (400, 404):  # a branch, commit or repository that is not there
            raise ConfigError(str(exc)) from exc
        if exc.status == 503:  # the repository cannot be fetched, or no control config
            fail(str(exc))
            return EXIT_UNREACHABLE
        raise  # run_with_client reports it, exit 1
    return _report(preview, args.json)


def _report(preview: Mapping[str, Any], as_json: bool) -> int:
    """Print the preview's JSON form (as JSON, or for people) and return the exit code."""
    if as_json:
        print(json.dumps(preview, indent=2, ensure_ascii=False, default=str))
    else:
        print(_as_text(preview), end="")
    return EXIT_PLAN_FAILED if preview["failures"] else EXIT_OK


def _as_text(preview: Mapping[str, Any]) -> str:
    """PipeCD's plan-preview layout, from the JSON form (so both ways print the same)."""
    base, head = preview["base"], preview["head"]
    planned, failures = preview["results"], preview["failures"]
    lines = [
        f"Plan preview of {head['ref']} ({head['commit'][:12]}) against {base['branch']} "
        f"({base['commit'][:12]})",
        "",
    ]
    if not planned and not failures:
        lines += [
            "No applications are changed: merging this will not trigger any deployment.",
            "",
        ]
        return "\n".join(lines)
    if planned:
        lines += [f"Here are plan-preview for {_applications(len(planned))}:", ""]
    for index, result in enumerate(planned, 1):
        lines += [
            f"{index}. application: {result['application']} ({result['config_path']})",
            f"  sync strategy: {result['strategy'].upper()}",
            f"  summary: {result['summary']}",
            f"  reason: {result['reason']}",
            "  stages: " + " → ".join(s["name"] for s in result["stages"] if s["visible"]),
            "  details:",
        ]
        details = result["details"] if result["details"] is not None else "(not compared)\n"
        lines += [f"    {line}" if line else "" for line in details.rstrip("\n").split("\n")]
        lines.append("")
    if failures:
        lines += [f"NOTE: {_applications(len(failures))} could not be planned:", ""]
        for index, result in enumerate(failures, 1):
            lines += [f"{index}. application: {result['application']} ({result['config_path']})",
                      f"  reason: {result['error']}", ""]  # fmt: skip
    return "\n".join(lines)


def _applications(count: int) -> str:
    return f"{count} application" + ("s" if count != 1 else "")
