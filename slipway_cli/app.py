"""`slipway app …`: register, list, show, disable, enable, sync and delete applications.

Exit codes, for CI to trust (the same for every command that talks to the API):

- 0 done; for `--wait-status`, the deployment reached a wanted status that is
  not a failure (SUCCESS, or a non-terminal one such as RUNNING);
- 1 the API refused or failed (its message is printed), or the deployment
  waited for ended FAILURE or CANCELLED, or ended in a status not wanted, or
  the cluster refused to delete some of a cascade-deleted app's resources;
- 2 a usage or configuration error;
- 3 the API could not be reached (the message names the URL);
- 4 `--wait-status` timed out before the deployment reached a wanted status,
  or `delete --cascade` before the drift service said how the delete went;
- 141 stdout's reader went away early (`| head`): the command stopped quietly
  without finishing (`slipway_cli/__init__.py`, for every command).

`delete --cascade` prints success only once the drift service has recorded
that it deleted the live resources (and how many); if the cluster refused, it
says what is left and why and exits 1.

The API key comes from `--api-key` or `$SLIPWAY_API_KEY` (prefer the
variable: arguments show in process listings). `--json` prints the API's
answer as is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from shared.syncstate import SyncState
from slipway_cli.api_client import (
    API_KEY_ENV,
    API_URL_ENV,
    CASCADE_DELETED,
    DEFAULT_API_URL,
    DEPLOYMENT_STATUSES,
    FAILED_STATUSES,
    ApiClient,
    ApiError,
    ApiUnreachable,
    JsonObject,
    WaitOutcome,
    api_key,
    api_url,
    wait_for_cascade,
    wait_for_status,
)

EXIT_OK: Final = 0
EXIT_API_ERROR: Final = 1
EXIT_FAILED: Final = 1
"""A deployment waited for failed, was cancelled, or ended in a status not wanted."""
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_TIMEOUT: Final = 4

# The CLI says `quick`; the API and the events say `quick_sync` (PipeCD's name).
STRATEGIES: Final = {"auto": "auto", "quick": "quick_sync", "pipeline": "pipeline"}

Handler = Callable[[ApiClient, argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "app",
        help="register, list and sync applications (through the API)",
        description="Applications: directories of a watched repository that Slipway deploys.",
    )
    commands = parser.add_subparsers(dest="app_command", required=True, metavar="COMMAND")
    common = common_options()

    add = commands.add_parser("add", parents=[common], help="register an application")
    add.add_argument("--name", required=True, help="unique; lowercase letters, digits, - and _")
    add.add_argument("--repo", required=True, help="the repository id (from the control config)")
    add.add_argument("--path", required=True, help="the application's directory in the repo")
    add.add_argument("--config-filename", help="default: app.pipecd.yaml")
    add.add_argument(
        "--platform-provider",
        help="the platform provider to deploy to (default: the control config's first)",
    )
    add.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="register even if the API cannot find the config file at the branch head",
    )
    _label_option(add, "a label; repeat for several")
    add.set_defaults(handler=run_with_client(_add))

    listing = commands.add_parser("list", parents=[common], help="list applications")
    _label_option(listing, "only those with this label; repeat to require several")
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--disabled", dest="disabled", action="store_const", const=True)
    state.add_argument("--enabled", dest="disabled", action="store_const", const=False)
    listing.add_argument(
        "--sync-state",
        type=_sync_states,
        default=(),
        metavar="STATE[,STATE…]",
        help=f"only those in one of these sync states ({', '.join(SyncState)})",
    )
    listing.set_defaults(handler=run_with_client(_list))

    get = commands.add_parser("get", parents=[common], help="show an application")
    get.add_argument("application", metavar="NAME", help="the application's name or id")
    get.set_defaults(handler=run_with_client(_get))

    for verb, handler in (("disable", _disable), ("enable", _enable)):
        sub = commands.add_parser(verb, parents=[common], help=f"{verb} an application")
        sub.add_argument("application", metavar="NAME", help="the application's name or id")
        sub.set_defaults(handler=run_with_client(handler))

    sync = commands.add_parser(
        "sync", parents=[common], help="deploy the application's branch head now"
    )
    sync.add_argument("application", metavar="NAME", help="the application's name or id")
    sync.add_argument(
        "--strategy",
        choices=tuple(STRATEGIES),
        default="auto",
        help="auto (the planner decides), quick (apply everything) or pipeline",
    )
    wait_options(sync)
    sync.add_argument(
        "--confirm-within",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="without --wait-status: how long to wait for the deployment to exist before "
        "saying it was triggered (exit 4 if it does not; default: 30)",
    )
    sync.add_argument(
        "--no-confirm",
        action="store_true",
        help="print the deployment id the request will open, without waiting for it to exist",
    )
    sync.set_defaults(handler=run_with_client(_sync))

    delete = commands.add_parser("delete", parents=[common], help="delete an application")
    delete.add_argument("application", metavar="NAME", help="the application's name or id")
    delete.add_argument(
        "--cascade",
        action="store_true",
        help="also delete the resources Slipway applied for it (else they keep running), "
        "and wait until the drift service says it did",
    )
    delete.add_argument(
        "--timeout",
        type=_seconds,
        default=120.0,
        metavar="SECONDS",
        help="with --cascade: give up waiting for the resources' deletion after this long, "
        "exit 4 (default: 120)",
    )
    delete.add_argument(
        "--poll-interval", type=_seconds, default=1.0, metavar="SECONDS", help=argparse.SUPPRESS
    )
    delete.set_defaults(handler=run_with_client(_delete))


def common_options() -> argparse.ArgumentParser:
    """The options every command over the API takes: where, which key, and `--json`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api-url",
        help=f"the API's base URL (default: ${API_URL_ENV}, else {DEFAULT_API_URL})",
    )
    common.add_argument(
        "--api-key",
        help=f"the API key (default: ${API_KEY_ENV}; prefer the variable, arguments are visible "
        "to other users of the machine)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")
    return common


def wait_options(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument(
        "--wait-status",
        type=statuses,
        required=required,
        metavar="STATUS[,STATUS…]",
        help="wait for the deployment to reach one of these statuses (e.g. SUCCESS,FAILURE); "
        "exit 0 only if it is not FAILURE or CANCELLED",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=1800.0,
        metavar="SECONDS",
        help="give up waiting after this long, exit 4 (default: 1800)",
    )
    parser.add_argument(
        "--poll-interval", type=_seconds, default=1.0, metavar="SECONDS", help=argparse.SUPPRESS
    )


def statuses(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated deployment statuses (any case); a usage error else."""
    return _among(text, DEPLOYMENT_STATUSES, "statuses")


def _sync_states(text: str) -> tuple[str, ...]:
    return _among(text, tuple(SyncState), "sync states")


def _among(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """`text`'s comma-separated words, upper-cased, each one of `allowed`; else a usage error."""
    words = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    unknown = sorted(set(words) - set(allowed))
    if not words or unknown:
        raise argparse.ArgumentTypeError(
            f"{what} are among {', '.join(allowed)}; not {', '.join(unknown) or repr(text)}"
        )
    return words


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1; a usage error else."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def _confirm_sync(client: ApiClient, args: argparse.Namespace, accepted: JsonObject) -> int:
    """Say a sync triggered its deployment only once the log holds it (never a phantom id):
    the API recorded the request, the gitwatcher opens the deployment."""
    deployment_id = accepted["deployment_id"]
    requested = (
        f"request {accepted['request_id']}, strategy {accepted['strategy']}, "
        f"deployment {deployment_id}"
    )
    if args.no_confirm:
        if args.json:
            print_json(accepted)
        else:
            print(f"sync requested for {args.application}: {requested}")
        return EXIT_OK
    outcome = wait_for_status(
        client,
        deployment_id,
        DEPLOYMENT_STATUSES,
        timeout_s=args.confirm_within,
        poll_s=min(args.poll_interval, 0.5),
    )
    if outcome.deployment is None:
        print(
            f"slipway: the sync of {args.application} was recorded ({requested}), but the "
            f"deployment did not appear within {args.confirm_within:g} s: is the gitwatcher "
            "running and watching the application's repository?",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    if args.json:
        print_json({**accepted, "status": outcome.deployment["status"]})
    else:
        status = outcome.deployment["status"]
        print(
            f"sync of {args.application} triggered deployment {deployment_id} ({status}): "
            f"request {accepted['request_id']}, strategy {accepted['strategy']}"
        )
    return EXIT_OK


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


def _label_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--label",
        dest="labels",
        action="append",
        type=_label,
        default=[],
        metavar="KEY=VALUE",
        help=help_text,
    )


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a label looks like key=value, not {text!r}")
    return key, value


def _labels(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for key, value in pairs:
        if labels.get(key, value) != value:
            raise argparse.ArgumentTypeError(f"--label {key} is given two values")
        labels[key] = value
    return labels


def run_with_client(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """`handler` with a client, and the API's failures turned into exit codes."""

    def run(args: argparse.Namespace) -> int:
        # ConfigError → exit 2 in slipway_cli.main
        client = ApiClient(api_url(args.api_url), key=api_key(args.api_key))
        try:
            return handler(client, args)
        except ApiUnreachable as exc:
            fail(str(exc))
            return EXIT_UNREACHABLE
        except ApiError as exc:
            field = f" [{exc.field}]" if exc.field else ""
            fail(f"{exc} (HTTP {exc.status} {exc.code}{field})")
            if exc.status == 401:
                fail(
                    f"set ${API_KEY_ENV} to an API key; the first admin key is made with "
                    "`slipway apikey create --direct --role admin` (needs $SLIPWAY_DATABASE_URL)"
                )
            return EXIT_API_ERROR
        except argparse.ArgumentTypeError as exc:
            fail(str(exc))
            return EXIT_USAGE

    return run


def _add(client: ApiClient, args: argparse.Namespace) -> int:
    app = client.register_application(
        name=args.name,
        repository_id=args.repo,
        path=args.path,
        config_filename=args.config_filename,
        platform_provider=args.platform_provider,
        labels=_labels(args.labels),
        verify=args.verify,
    )
    if args.json:
        print_json(app)
    else:
        print(f"registered {app['name']} (id {app['application_id']})")
    return 0


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    apps = client.list_applications(
        labels=_labels(args.labels), disabled=args.disabled, sync_states=args.sync_state
    )
    if args.json:
        print_json(apps)
    elif not apps:
        print("no applications")
    else:
        print(_table(apps))
    return 0


def _get(client: ApiClient, args: argparse.Namespace) -> int:
    _show(client.get_application(args.application), args.json)
    return 0


def _disable(client: ApiClient, args: argparse.Namespace) -> int:
    _show(client.disable_application(args.application), args.json)
    return 0


def _enable(client: ApiClient, args: argparse.Namespace) -> int:
    _show(client.enable_application(args.application), args.json)
    return 0


def _sync(client: ApiClient, args: argparse.Namespace) -> int:
    accepted = client.sync_application(args.application, strategy=STRATEGIES[args.strategy])
    if not args.wait_status:
        return _confirm_sync(client, args, accepted)
    print(
        f"sync requested for {args.application}: deployment {accepted['deployment_id']}; "
        f"waiting for {','.join(args.wait_status)} (at most {args.timeout:g} s)",
        file=sys.stderr,
    )
    outcome = wait_for_status(
        client,
        accepted["deployment_id"],
        args.wait_status,
        timeout_s=args.timeout,
        poll_s=args.poll_interval,
        progress=progress_printer(),
    )
    return report_outcome(outcome, args.json)


def _delete(client: ApiClient, args: argparse.Namespace) -> int:
    deleted = client.delete_application(args.application, cascade=args.cascade)
    name = deleted["name"] or args.application
    if not deleted["cascade"]:
        if args.json:
            print_json(deleted)
        else:
            print(f"deleted {name} (its live resources stay)")
        return 0
    print(
        f"deleted {name}; waiting for the drift service to delete its live resources "
        f"(at most {args.timeout:g} s)",
        file=sys.stderr,
    )
    verdict = wait_for_cascade(
        client,
        deleted["application_id"],
        after_position=deleted["position"],
        timeout_s=args.timeout,
        poll_s=args.poll_interval,
    )
    if verdict is None:
        fail(
            f"deleted {name}, but nothing confirmed its live resources were deleted within "
            f"{args.timeout:g} s (is the drift service running? see `slipway events show "
            f"drift-{deleted['application_id']}`)"
        )
        return EXIT_TIMEOUT
    data = verdict["data"]
    if args.json:
        print_json({**deleted, "resources": data, "resources_outcome": verdict["event_type"]})
    if verdict["event_type"] == CASCADE_DELETED:
        if not args.json:
            resources = data.get("resources", [])
            if not resources:
                print(f"deleted {name} (it had no live resources to delete)")
            else:
                noun = "resource" if len(resources) == 1 else "resources"
                print(
                    f"deleted {name} and its {len(resources)} live {noun}: "
                    f"{_format_keys(resources)}"
                )
        return EXIT_OK
    fail(f"deleted {name}, but not all its live resources: {data['reason']}")
    if data.get("remaining"):
        fail(f"still live: {_format_keys(data['remaining'])}")
    if data.get("deleted"):
        fail(f"deleted: {_format_keys(data['deleted'])}")
    fail(
        "the drift service tries again each round; fix the cause and watch "
        f"`slipway events show drift-{deleted['application_id']}`"
    )
    return EXIT_API_ERROR


def _format_keys(keys: Sequence[str]) -> str:
    """`group/kind/namespace/name` keys as `Kind namespace/name`, comma-separated."""
    return ", ".join(
        f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
        for kind, namespace, name in (key.split("/")[1:4] for key in keys)
    )


# --- output ---------------------------------------------------------------------------------


_COLUMNS: Final = ("NAME", "ID", "REPOSITORY", "PATH", "STATUS", "SYNC", "LABELS")


def _table(apps: Sequence[Mapping[str, Any]]) -> str:
    rows = [_COLUMNS] + [
        (
            app["name"],
            app["application_id"],
            app["repository_id"],
            app["path"],
            _status(app),
            app.get("sync_state", "UNKNOWN"),
            _format_labels(app["labels"]) or "-",
        )
        for app in apps
    ]
    return table(rows)


def table(rows: Sequence[Sequence[str]]) -> str:
    """`rows` (the first is the header) as left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _show(app: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(app)
        return
    fields = (
        ("name", app["name"]),
        ("id", app["application_id"]),
        ("repository", app["repository_id"]),
        ("path", app["path"]),
        ("config file", app["config_filename"]),
        ("platform provider", app["platform_provider"] or "-"),
        ("labels", _format_labels(app["labels"]) or "-"),
        ("status", _status(app)),
        ("registered at", app["registered_at"]),
        ("updated at", app["updated_at"]),
        *_sync_fields(app.get("sync") or {}),
    )
    width = max(len(label) for label, _ in fields) + 1
    for label, value in fields:
        print(f"{label + ':':<{width}} {value}")
    drift = (app.get("sync") or {}).get("drift")
    if drift and drift.get("diff"):
        # In full: the diff is what a person needs to decide, never cut short here.
        print(f"drift diff (at commit {drift['commit_hash'][:12] or '-'}):")
        for line in drift["diff"].splitlines():
            print(f"  {line}")


def _sync_fields(sync: Mapping[str, Any]) -> list[tuple[str, str]]:
    """`app get`'s lines about the sync state (shared/syncstate.py says how it is derived)."""
    state = sync.get("state", "UNKNOWN")
    since = f" since {sync['since']}" if sync.get("since") else ""
    reason = f" ({sync['reason']})" if sync.get("reason") else ""
    last = sync.get("last_deployment")
    drift = sync.get("drift")
    return [
        ("sync", f"{state}{since}{reason}"),
        ("running commit", sync.get("running_commit") or "-"),
        (
            "last deployment",
            f"{last['deployment_id']} {last['status']} at {last['at']} "
            f"(commit {last['commit_hash'][:12]})"
            if last
            else "-",
        ),
        (
            "drift",
            f"{drift['state']} at {drift['at']}: {drift['summary']}"
            if drift
            else "not checked yet",
        ),
    ]


def _status(app: Mapping[str, Any]) -> str:
    return "disabled" if app["disabled"] else "enabled"


def _format_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def progress_printer() -> Callable[[Mapping[str, Any] | None], None]:
    """Prints a line to stderr whenever the deployment's status or running stage changes."""
    last: list[str] = []

    def show(deployment: Mapping[str, Any] | None) -> None:
        if deployment is None:
            line = "waiting for the deployment to be triggered"
        else:
            line = f"{deployment['deployment_id']}: {deployment['status']}"
            running = [s for s in deployment.get("stages", []) if s["status"] == "RUNNING"]
            done = [s for s in deployment.get("stages", []) if s["visible"]]
            if running:
                stage = running[0]
                line += f" — stage {stage['stage_id']} {stage['name']} running"
            if done:
                finished = sum(1 for s in done if s["status"] not in ("NOT_STARTED_YET", "RUNNING"))
                line += f" ({finished}/{len(done)} stages done)"
        if last != [line]:
            last[:] = [line]
            print(line, file=sys.stderr, flush=True)

    return show


def report_outcome(outcome: WaitOutcome, as_json: bool) -> int:
    """Print how the wait ended (stdout: the deployment; stderr: why) and its exit code."""
    deployment = outcome.deployment
    if as_json and deployment is not None:
        print_json(deployment)
    if outcome.timed_out:
        status = deployment["status"] if deployment else "not triggered yet"
        fail(f"timed out after {outcome.waited_s:.0f} s; the deployment is {status}")
        return EXIT_UNREACHABLE if outcome.unreachable else EXIT_TIMEOUT
    assert deployment is not None
    status = deployment["status"]
    reason = f": {deployment['reason']}" if deployment.get("reason") else ""
    if not as_json:
        print(f"deployment {deployment['deployment_id']} {status}{reason}")
    if status in FAILED_STATUSES or not outcome.wanted:
        if not outcome.wanted:
            fail(f"the deployment ended {status}, which was not waited for")
        return EXIT_FAILED
    return EXIT_OK


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def fail(message: str) -> None:
    print(f"slipway: {message}", file=sys.stderr)
