"""`slipway deployment …`: list, show, follow logs, wait for, approve, skip and cancel deployments.

Exit codes as for `slipway app` (see `slipway_cli/command.py`): 0 done (for
`wait-status`, a wanted status that is not a failure); 1 the API refused, or
the deployment failed, was cancelled or ended in a status not wanted; 2 usage;
3 the API unreachable; 4 timed out waiting. `logs --follow` exits like
`wait-status SUCCESS`: 0 only if the deployment ended SUCCESS.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

from slipway_cli.command import (
    EXIT_FAILED,
    EXIT_OK,
    clipped,
    common_options,
    positive_int,
    print_json,
    printable,
    run_with_client,
    table,
)
from slipway_cli.waiting import (
    progress_printer,
    report_outcome,
    statuses,
    wait_for_status,
    wait_options,
)
from slipway_client import ApiClient

_COLUMNS: Final = (
    "ID",
    "APPLICATION",
    "STATUS",
    "TRIGGER",
    "COMMIT",
    "VERSION",
    "SUMMARY",
    "TRIGGERED AT",
)
_VERSION_WIDTH: Final = 32
"""Enough for two images' `tag (name)`; `--json` and `deployment get` have the rest."""
_ID_HELP: Final = "the deployment's id, or a unique prefix of it (at least 4 characters)"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway deployment` (list, follow, approve, skip, cancel) to the parser."""
    parser = subparsers.add_parser(
        "deployment",
        help="list and follow deployments; approve, skip and cancel (through the API)",
        description="Deployments: one rollout of an application's commit, stage by stage.",
    )
    commands = parser.add_subparsers(dest="deployment_command", required=True, metavar="COMMAND")
    common = common_options()

    listing = commands.add_parser("list", parents=[common], help="newest deployments first")
    listing.add_argument("--app", dest="application", help="only this application's (name or id)")
    listing.add_argument(
        "--status",
        action="append",
        type=statuses,
        default=[],
        metavar="STATUS[,STATUS…]",
        help="only these statuses (repeat or comma)",
    )
    listing.add_argument(
        "--limit", type=positive_int, default=20, help="at most this many (default: 20)"
    )
    listing.set_defaults(handler=run_with_client(_list))

    get = commands.add_parser("get", parents=[common], help="show a deployment and its stages")
    get.add_argument("deployment", metavar="ID", help=_ID_HELP)
    get.set_defaults(handler=run_with_client(_get))

    logs = commands.add_parser("logs", parents=[common], help="what its stages wrote")
    logs.add_argument("deployment", metavar="ID", help=_ID_HELP)
    logs.add_argument(
        "--stage", help="only this stage's lines: its id, or its name if no other stage has it"
    )
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing until the deployment completes"
    )
    logs.set_defaults(handler=run_with_client(_logs))

    wait = commands.add_parser(
        "wait-status", parents=[common], help="wait until it reaches one of some statuses"
    )
    wait.add_argument("deployment", metavar="ID", help=_ID_HELP)
    wait_options(wait, required=True)
    wait.set_defaults(handler=run_with_client(_wait))

    for verb, handler, text in (
        ("approve", _approve, "approve a WAIT_APPROVAL stage (as the API key's name)"),
        ("skip", _skip, "skip a WAIT, WAIT_APPROVAL or ANALYSIS stage"),
    ):
        sub = commands.add_parser(verb, parents=[common], help=text)
        sub.add_argument("deployment", metavar="ID", help=_ID_HELP)
        sub.add_argument(
            "--stage",
            required=True,
            help="the stage's id (see `deployment get`), or its name if no other stage has it",
        )
        sub.set_defaults(handler=run_with_client(handler))

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a running deployment")
    cancel.add_argument("deployment", metavar="ID", help=_ID_HELP)
    rollback = cancel.add_mutually_exclusive_group()
    rollback.add_argument(
        "--rollback",
        dest="rollback",
        action="store_true",
        default=True,
        help="roll back to the running version first (the default)",
    )
    rollback.add_argument(
        "--no-rollback", dest="rollback", action="store_false", help="stop where it is"
    )
    cancel.set_defaults(handler=run_with_client(_cancel))


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    wanted = [status for group in args.status for status in group]
    items = client.list_deployments(application=args.application, statuses=wanted, limit=args.limit)
    if args.json:
        print_json(items)
    elif not items:
        print("no deployments")
    else:
        print(_table(items))
    return EXIT_OK


def _get(client: ApiClient, args: argparse.Namespace) -> int:
    deployment = client.get_deployment(args.deployment)
    if args.json:
        print_json(deployment)
    else:
        print(describe(deployment))
    return EXIT_OK


def _logs(client: ApiClient, args: argparse.Namespace) -> int:
    if not args.follow:
        lines = client.deployment_logs(args.deployment, stage_id=args.stage)
        for line in lines:
            print(print_json_line(line) if args.json else format_line(line))
        if not lines:
            _plan_failure(client, args)
        return EXIT_OK
    status = ""
    printed = False
    for event, data in client.follow_logs(args.deployment, stage_id=args.stage):
        if event == "log":
            printed = True
            print(print_json_line(data) if args.json else format_line(data), flush=True)
        elif event == "end":
            status = str(data.get("status", ""))
    if not printed and status == "FAILURE":
        _plan_failure(client, args)
    print(f"deployment {args.deployment} {status or 'ended'}", file=sys.stderr)
    return EXIT_OK if status == "SUCCESS" else EXIT_FAILED


def _plan_failure(client: ApiClient, args: argparse.Namespace) -> None:
    """A deployment that failed while being planned ran no stage, so no stage wrote a line:
    its plan error is what there is to read, printed as a line of the (pseudo) stage `plan`."""
    if args.stage:
        return
    deployment = client.get_deployment(args.deployment)
    if deployment["status"] != "FAILURE" or deployment.get("stages"):
        return
    line = {
        "id": 0,
        "deployment_id": deployment["deployment_id"],
        "stage_id": "plan",
        "severity": "ERROR",
        "message": f"planning failed: {deployment.get('reason') or 'no reason recorded'}",
        "recorded_at": deployment.get("completed_at") or deployment.get("triggered_at") or "",
    }
    print(print_json_line(line) if args.json else format_line(line), flush=True)


def _wait(client: ApiClient, args: argparse.Namespace) -> int:
    outcome = wait_for_status(
        client,
        args.deployment,
        args.wait_status,
        timeout_s=args.timeout,
        poll_s=args.poll_interval,
        progress=progress_printer(),
    )
    return report_outcome(outcome, args.json)


def _approve(client: ApiClient, args: argparse.Namespace) -> int:
    return _said(client.approve_stage(args.deployment, args.stage), args, "approval of")


def _skip(client: ApiClient, args: argparse.Namespace) -> int:
    return _said(client.skip_stage(args.deployment, args.stage), args, "skip of")


def _cancel(client: ApiClient, args: argparse.Namespace) -> int:
    accepted = client.cancel_deployment(args.deployment, rollback=args.rollback)
    how = "with rollback" if args.rollback else "without rollback"
    return _said(accepted, args, f"cancel ({how}) of")


def _said(accepted: Mapping[str, Any], args: argparse.Namespace, what: str) -> int:
    if args.json:
        print_json(accepted)
        return EXIT_OK
    stage = f" stage {accepted['stage_id']}" if accepted.get("stage_id") else ""
    if accepted["appended"]:
        print(f"{what} deployment {accepted['deployment_id']}{stage} recorded")
    else:
        print(f"{what} deployment {accepted['deployment_id']}{stage} was asked already")
    return EXIT_OK


# --- output ---------------------------------------------------------------------------------


def _table(items: Sequence[Mapping[str, Any]]) -> str:
    rows = [_COLUMNS] + [
        (
            d["deployment_id"],
            application_of(d),
            d["status"],
            d["trigger"] or "-",
            (d["commit_hash"] or "-")[:8],
            clipped(printable(d.get("deployed_version") or "-"), _VERSION_WIDTH),
            (d["summary"] or "-")[:50],
            d["triggered_at"][:19].replace("T", " "),
        )
        for d in items
    ]
    return table(rows)


def describe(d: Mapping[str, Any]) -> str:
    """A deployment and its stages, for people."""
    lines = [
        f"deployment:  {d['deployment_id']}",
        f"application: {application_of(d)}"
        + (f" (id {d['application_id']})" if d.get("application_name") else ""),
        f"status:      {d['status']}" + (f" ({d['reason']})" if d.get("reason") else ""),
        f"trigger:     {d['trigger'] or '-'}"
        + (f" by {d['commander']}" if d.get("commander") else ""),
        f"commit:      {d['commit_hash'] or '-'} {_first_line(d.get('commit_message', ''))}",
        f"strategy:    {d['strategy'] or '-'}" + (f" — {d['summary']}" if d.get("summary") else ""),
    ]
    if d.get("deployed_version"):
        lines.append(f"version:     {printable(d['deployed_version'])}")
    if d["status"] == "PENDING":
        lines.append(f"waiting:     {_pending(d)}")
    if d.get("cancel_requested"):
        lines.append(
            "cancel:      requested "
            + ("with rollback" if d.get("cancel_with_rollback") else "without rollback")
        )
    stages = [s for s in d.get("stages", []) if s["visible"] or s["status"] != "NOT_STARTED_YET"]
    if stages:
        lines.append("stages:")
        for s in stages:
            extra = f" — {s['reason']}" if s.get("reason") else _approval(s)
            lines.append(f"  {s['stage_id']:<12} {s['name']:<22} {s['status']}{extra}")
    return "\n".join(lines)


def application_of(d: Mapping[str, Any]) -> str:
    """The application's name (marked once deleted), else its id (never registered)."""
    name = d.get("application_name") or ""
    if not name:
        return str(d["application_id"])
    return f"{name} (deleted)" if d.get("application_deleted") else name


def _pending(d: Mapping[str, Any]) -> str:
    """What a PENDING deployment waits for."""
    if d.get("queued_behind"):
        return (
            f"its turn, after deployment {d['queued_behind']} of the same application "
            "(one at a time)"
        )
    return "the planner to plan it"


def _approval(s: Mapping[str, Any]) -> str:
    """A WAIT_APPROVAL stage that has not ended: who approved, who may, how many are missing."""
    if s["name"] != "WAIT_APPROVAL" or s["status"] not in ("NOT_STARTED_YET", "RUNNING"):
        return ""
    parts = []
    if s.get("approvers"):
        parts.append(f"approved by {', '.join(s['approvers'])}")
    needed = int(s.get("approvals_needed") or 0)
    if needed:
        allowed = s.get("allowed_approvers") or ()
        who = f" from {', '.join(allowed)}" if allowed else " from anyone"
        parts.append(f"needs {needed} more approval{'s' if needed > 1 else ''}{who}")
    return f" — {'; '.join(parts)}" if parts else ""


def format_line(line: Mapping[str, Any]) -> str:
    """One stage log line as `follow` prints it: time, stage, severity, message."""
    at = str(line["recorded_at"])[11:19]
    return f"{at} {line['stage_id']:<10} {line['severity']:<7} {line['message']}"


def print_json_line(line: Mapping[str, Any]) -> str:
    """One stage log line as a JSON document (for `--json` output)."""
    return json.dumps(line, sort_keys=True)


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""
