"""`slipway app …`: register, list, show, disable, enable, sync, import and delete applications,
and list the unregistered ones (config files no application is registered at).

`import` (taking over what PipeCD deploys) is in `app_import`.

Exit codes as for every command over the API (`slipway_cli/command.py`).

`delete --cascade` prints success only once the drift service has recorded
that it deleted the live resources (and how many); if the cluster refused, it
says what is left and why and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

from shared.events.streams import drift_stream
from shared.events.vocabulary import Strategy
from shared.syncstate import SyncState
from slipway_cli.app_import import register_import
from slipway_cli.app_live import print_live_tree
from slipway_cli.command import (
    EXIT_API_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
    among,
    common_options,
    fail,
    print_json,
    printable,
    run_with_client,
    seconds,
    table,
)
from slipway_cli.waiting import (
    CASCADE_DELETED,
    DEPLOYMENT_STATUSES,
    progress_printer,
    report_outcome,
    wait_for_cascade,
    wait_for_status,
    wait_options,
)
from slipway_client import ApiClient, JsonObject

# The CLI says `quick`; the API and the events say `quick_sync` (PipeCD's name).
_CLI_WORDS: Final = {Strategy.QUICK_SYNC: "quick"}
STRATEGIES: Final = {_CLI_WORDS.get(s, s.value): s.value for s in Strategy}
"""The CLI's word for each strategy, and the API's."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway app` (register, list, sync applications) to the parser."""
    parser = subparsers.add_parser(
        "app",
        help="register, list and sync applications (through the API)",
        description="Applications: directories of a watched repository that Slipway deploys.",
    )
    commands = parser.add_subparsers(dest="app_command", required=True, metavar="COMMAND")
    common = common_options()

    add = commands.add_parser(
        "add",
        parents=[common],
        help="register an application",
        description="Register an application: --name, --repo and --path, or --from-unregistered "
        "ID (one of `slipway app unregistered`, named as its config names it unless --name).",
    )
    add.add_argument("--name", help="unique; lowercase letters, digits, - and _")
    add.add_argument("--repo", help="the repository id (from the control config)")
    add.add_argument("--path", help="the application's directory in the repo")
    add.add_argument(
        "--from-unregistered",
        metavar="ID",
        help="register the config file `slipway app unregistered` lists with this id",
    )
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

    unregistered = commands.add_parser(
        "unregistered",
        parents=[common],
        help="list config files in watched repositories that no application is registered at",
        description="Application config files (app.pipecd.yaml, *.pipecd.yaml, .pipe.yaml) the "
        "gitwatcher found that no application is registered at (PipeCD's unregistered "
        "applications); register one with `slipway app add --from-unregistered ID`.",
    )
    unregistered.add_argument("--repo", help="only those of this repository")
    unregistered.set_defaults(handler=run_with_client(_unregistered))

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
    get.add_argument(
        "--live",
        action="store_true",
        help="also its live resources as a tree (Deployment > ReplicaSet > Pod, Services, "
        "…) with their health, as the drift service last recorded them",
    )
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
        type=seconds,
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

    register_import(commands, common)

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
        type=seconds,
        default=120.0,
        metavar="SECONDS",
        help="with --cascade: give up waiting for the resources' deletion after this long, "
        "exit 4 (default: 120)",
    )
    delete.add_argument(
        "--poll-interval", type=seconds, default=1.0, metavar="SECONDS", help=argparse.SUPPRESS
    )
    delete.set_defaults(handler=run_with_client(_delete))


def _sync_states(text: str) -> tuple[str, ...]:
    return among(text, tuple(SyncState), "sync states")


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


def _add(client: ApiClient, args: argparse.Namespace) -> int:
    if args.from_unregistered is not None:
        given = [f"--{o}" for o in ("repo", "path") if getattr(args, o) is not None]
        if args.config_filename is not None:
            given.append("--config-filename")
        if given:
            raise argparse.ArgumentTypeError(
                f"--from-unregistered takes the repository, path and config file it found: "
                f"leave out {', '.join(given)}"
            )
        app = client.register_unregistered_application(
            args.from_unregistered,
            name=args.name,
            platform_provider=args.platform_provider,
            labels=_labels(args.labels),
            verify=args.verify,
        )
        return _registered(app, args.json)
    missing = [f"--{o}" for o in ("name", "repo", "path") if getattr(args, o) is None]
    if missing:
        raise argparse.ArgumentTypeError(
            f"the following arguments are required: {', '.join(missing)} "
            "(or --from-unregistered ID)"
        )
    app = client.register_application(
        name=args.name,
        repository_id=args.repo,
        path=args.path,
        config_filename=args.config_filename,
        platform_provider=args.platform_provider,
        labels=_labels(args.labels),
        verify=args.verify,
    )
    return _registered(app, args.json)


def _registered(app: Mapping[str, Any], as_json: bool) -> int:
    if as_json:
        print_json(app)
    else:
        print(f"registered {app['name']} (id {app['application_id']})")
    return 0


def _unregistered(client: ApiClient, args: argparse.Namespace) -> int:
    found = client.list_unregistered_applications(repository_id=args.repo)
    if args.json:
        print_json(found)
    elif not found:
        print("no unregistered applications")
    else:
        print(_unregistered_table(found))
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
    app = client.get_application(args.application)
    if not args.live:
        _show(app, args.json)
        return 0
    live = client.get_live_resources(app["application_id"])
    if args.json:
        print_json({**app, "live": live})
        return 0
    _show(app, False)
    print_live_tree(live)
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
            f"{drift_stream(deleted['application_id'])}`)"
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


_UNREGISTERED_COLUMNS: Final = ("ID", "NAME", "REPOSITORY", "PATH", "CONFIG FILE", "LABELS")


def _unregistered_table(found: Sequence[Mapping[str, Any]]) -> str:
    rows = [_UNREGISTERED_COLUMNS] + [
        (
            item["id"],
            printable(item["name"]),
            item["repository_id"],
            printable(item["path"]),
            printable(item["config_filename"]),
            _format_labels(item["labels"]) or "-",
        )
        for item in found
    ]
    return table(rows)


def _show(app: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(app)
        return
    fields = (
        ("name", app["name"]),
        ("description", app.get("description") or "-"),
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
        # A multi-line value (a description) continues under the first line's start.
        print(f"{label + ':':<{width}} " + str(value).replace("\n", "\n" + " " * (width + 1)))
    drift = (app.get("sync") or {}).get("drift")
    if drift and drift.get("diff"):
        # In full: the diff is what a person needs to decide, never cut short here.
        print(f"drift diff (at commit {drift['commit_hash'][:12] or '-'}):")
        for line in drift["diff"].splitlines():
            print(f"  {line}")


def _running_commit(sync: Mapping[str, Any]) -> str:
    running, adopted = sync.get("running_commit") or "", sync.get("adopted_commit") or ""
    if running and running == adopted:
        return f"{running} (adopted from PipeCD by `slipway app import`)"
    return running or "-"


def _sync_fields(sync: Mapping[str, Any]) -> list[tuple[str, str]]:
    """`app get`'s lines about the sync state (shared/syncstate.py says how it is derived)."""
    state = sync.get("state", "UNKNOWN")
    since = f" since {sync['since']}" if sync.get("since") else ""
    reason = f" ({sync['reason']})" if sync.get("reason") else ""
    last = sync.get("last_deployment")
    drift = sync.get("drift")
    return [
        ("sync", f"{state}{since}{reason}"),
        ("running commit", _running_commit(sync)),
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
