"""`slipway app …`: register, list, show, disable, enable, sync and delete applications.

Exit codes, for CI to trust: 0 done; 1 the API refused or failed (its message
is printed); 2 a usage or configuration error; 3 the API could not be
reached (the message names the URL). `--json` prints the API's answer as is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from shared.api_client import (
    API_URL_ENV,
    DEFAULT_API_URL,
    ApiClient,
    ApiError,
    ApiUnreachable,
    api_url,
)

EXIT_API_ERROR: Final = 1
EXIT_UNREACHABLE: Final = 3

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
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api-url",
        help=f"the API's base URL (default: ${API_URL_ENV}, else {DEFAULT_API_URL})",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")

    add = commands.add_parser("add", parents=[common], help="register an application")
    add.add_argument("--name", required=True, help="unique; lowercase letters, digits, - and _")
    add.add_argument("--repo", required=True, help="the repository id (from the control config)")
    add.add_argument("--path", required=True, help="the application's directory in the repo")
    add.add_argument("--config-filename", help="default: app.pipecd.yaml")
    add.add_argument("--platform-provider", help="the platform provider to deploy to")
    _label_option(add, "a label; repeat for several")
    add.set_defaults(handler=_run(_add))

    listing = commands.add_parser("list", parents=[common], help="list applications")
    _label_option(listing, "only those with this label; repeat to require several")
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--disabled", dest="disabled", action="store_const", const=True)
    state.add_argument("--enabled", dest="disabled", action="store_const", const=False)
    listing.set_defaults(handler=_run(_list))

    get = commands.add_parser("get", parents=[common], help="show an application")
    get.add_argument("application", metavar="NAME", help="the application's name or id")
    get.set_defaults(handler=_run(_get))

    for verb, handler in (("disable", _disable), ("enable", _enable)):
        sub = commands.add_parser(verb, parents=[common], help=f"{verb} an application")
        sub.add_argument("application", metavar="NAME", help="the application's name or id")
        sub.set_defaults(handler=_run(handler))

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
    sync.set_defaults(handler=_run(_sync))

    delete = commands.add_parser("delete", parents=[common], help="delete an application")
    delete.add_argument("application", metavar="NAME", help="the application's name or id")
    delete.add_argument(
        "--cascade",
        action="store_true",
        help="also delete the resources Slipway applied for it (else they keep running)",
    )
    delete.set_defaults(handler=_run(_delete))


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


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """`handler` with a client, and the API's failures turned into exit codes."""

    def run(args: argparse.Namespace) -> int:
        client = ApiClient(api_url(args.api_url))  # ConfigError → exit 2 in shared.cli.main
        try:
            return handler(client, args)
        except ApiUnreachable as exc:
            _fail(str(exc))
            return EXIT_UNREACHABLE
        except ApiError as exc:
            field = f" [{exc.field}]" if exc.field else ""
            _fail(f"{exc} (HTTP {exc.status} {exc.code}{field})")
            return EXIT_API_ERROR
        except argparse.ArgumentTypeError as exc:
            _fail(str(exc))
            return 2

    return run


def _add(client: ApiClient, args: argparse.Namespace) -> int:
    app = client.register_application(
        name=args.name,
        repository_id=args.repo,
        path=args.path,
        config_filename=args.config_filename,
        platform_provider=args.platform_provider,
        labels=_labels(args.labels),
    )
    if args.json:
        _print_json(app)
    else:
        print(f"registered {app['name']} (id {app['application_id']})")
    return 0


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    apps = client.list_applications(labels=_labels(args.labels), disabled=args.disabled)
    if args.json:
        _print_json(apps)
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
    if args.json:
        _print_json(accepted)
    else:
        print(
            f"sync requested for {args.application}: request {accepted['request_id']}, "
            f"strategy {accepted['strategy']}"
        )
    return 0


def _delete(client: ApiClient, args: argparse.Namespace) -> int:
    deleted = client.delete_application(args.application, cascade=args.cascade)
    if args.json:
        _print_json(deleted)
    else:
        what = "with its live resources" if deleted["cascade"] else "its live resources stay"
        print(f"deleted {deleted['name'] or args.application} ({what})")
    return 0


# --- output ---------------------------------------------------------------------------------


_COLUMNS: Final = ("NAME", "ID", "REPOSITORY", "PATH", "STATUS", "LABELS")


def _table(apps: Sequence[Mapping[str, Any]]) -> str:
    rows = [_COLUMNS] + [
        (
            app["name"],
            app["application_id"],
            app["repository_id"],
            app["path"],
            _status(app),
            _format_labels(app["labels"]) or "-",
        )
        for app in apps
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _show(app: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(app)
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
    )
    width = max(len(label) for label, _ in fields) + 1
    for label, value in fields:
        print(f"{label + ':':<{width}} {value}")


def _status(app: Mapping[str, Any]) -> str:
    return "disabled" if app["disabled"] else "enabled"


def _format_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _fail(message: str) -> None:
    print(f"slipway: {message}", file=sys.stderr)
