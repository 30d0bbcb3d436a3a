"""`slipway pipectl …` (and the opt-in `pipectl` script): PipeCD's pipectl over Slipway's API.

CI steps written for PipeCD run unchanged: the same commands, flags, status
names, output shapes and exit codes as pipectl (its `pkg/app/pipectl`), for

- `application add|sync|get|list|delete|disable|enable` (`enable` is Slipway's
  addition; pipectl has none), `sync --wait-status DEPLOYMENT_SUCCESS`;
- `deployment wait-status --deployment-id ID --status S[,S…]`;
- `plan-preview --repo-remote-url --base-branch --head-branch --head-commit
  [--out FILE] [--sort-label-keys]`: planned here, from a clone of the remote
  (no server needed; Slipway's planner is the same code the server runs);
- `event register --name --data [--labels] [--contexts] [--commit-hash]`:
  through the API's `registerEvent` route (the event watcher's); the other
  `--commit-*` flags are accepted and not kept.

Where it talks to: `--address host:port` (TLS unless `--insecure`, as pipectl
dials; a URL with a scheme is taken as is), else `$SLIPWAY_API_URL`; the key:
`--api-key`, else the file `--api-key-file`, else `$SLIPWAY_API_KEY`.

Exit codes, as pipectl's (`log.Fatal`): 0 done, 1 anything else — a usage
error, a refusal, an unreachable API, a deployment that ended in a status not
waited for, a timeout. One difference, on purpose: pipectl keeps polling a
deployment that ended FAILURE while SUCCESS is awaited until its `--timeout`;
this exits 1 as soon as the deployment has ended (same code, minutes sooner).

Messages go to stderr as `LEVEL<TAB>message` with pipectl's wording
(`Successfully added application id = …`, `Deployment is at … status`);
`get` and `list` print PipeCD's JSON on stdout (`slipway_cli.pipectl_wire`).

This module is the command line (pipectl's commands and flags, cobra's way of
failing); what each command does is `slipway_cli.pipectl_commands`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from shared.errors import SlipwayError
from slipway_cli import pipectl_commands as commands
from slipway_cli.pipectl_commands import DEFAULT_CONFIG_FILENAME, EXIT_FAILED
from slipway_cli.pipectl_wire import PIPECD_STATUSES, go_duration
from slipway_client import API_KEY_ENV

__all__ = ["build_parser", "main", "register"]


class _Parser(argparse.ArgumentParser):
    """argparse that fails as cobra does: `Error: …` on stderr, exit 1 (never argparse's 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"Error: {message}", file=sys.stderr)
        print(f"Run '{self.prog} --help' for usage.", file=sys.stderr)
        raise SystemExit(EXIT_FAILED)


# --- the parser ------------------------------------------------------------------------------


def _client_options() -> _Parser:
    """pipectl's persistent flags (`client.Options`) and the root's logging flags."""
    options = _Parser(add_help=False)
    options.add_argument("--address", help="the Slipway API: host:port, or a URL")
    options.add_argument("--api-key", help=f"the API key (default: ${API_KEY_ENV})")
    options.add_argument("--api-key-file", help="a file holding the API key")
    options.add_argument(
        "--insecure", action="store_true", help="plain HTTP to --address (else HTTPS)"
    )
    options.add_argument("--cert-file", help="a CA certificate (PEM) to trust for --address")
    for ignored in ("--log-level", "--log-encoding", "--metrics"):
        options.add_argument(ignored, help=argparse.SUPPRESS)
    return options


def _duration(text: str) -> float:
    try:
        return go_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _string_slice(text: str) -> list[str]:
    """cobra's StringSlice: comma-separated, and repeatable (appended by `_Extend`)."""
    return [part for part in text.split(",") if part]


def _string_to_string(text: str) -> dict[str, str]:
    """cobra's StringToString: `k=v,k2=v2`; a part without `=` is an error."""
    pairs: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{text} must be formatted as key=value")
        pairs[key] = value
    return pairs


class _Extend(argparse.Action):
    """Repeated slice or map flags accumulate, as cobra's do."""

    def __call__(self, _parser: Any, namespace: Any, values: Any, _option: Any = None) -> None:
        current = getattr(namespace, self.dest, None)
        if isinstance(values, dict):
            setattr(namespace, self.dest, {**(current or {}), **values})
        else:
            setattr(namespace, self.dest, [*(current or []), *values])


def build_parser(prog: str = "pipectl") -> argparse.ArgumentParser:
    """pipectl's commands and flags; each command's `handler` is in `pipectl_commands`."""
    parser = _Parser(prog=prog, description="PipeCD's pipectl, over Slipway's API.")
    groups = parser.add_subparsers(
        dest="group", required=True, metavar="COMMAND", parser_class=_Parser
    )
    client = _client_options()

    application = groups.add_parser("application", help="manage applications")
    apps = application.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    add = apps.add_parser("add", parents=[client], help="add a new application")
    add.add_argument("--app-name", required=True)
    add.add_argument("--app-kind", required=True, help="KUBERNETES (Slipway deploys no other)")
    add.add_argument("--labels", default="", help="key1=value1,key2=value2")
    add.add_argument("--piped-id", required=True, help="accepted; Slipway has no pipeds")
    add.add_argument("--platform-provider", "--cloud-provider", required=True)
    add.add_argument("--repo-id", required=True)
    add.add_argument("--app-dir", required=True)
    add.add_argument("--config-file-name", default=DEFAULT_CONFIG_FILENAME)
    add.add_argument("--description", default="")
    add.set_defaults(handler=commands.add)

    sync = apps.add_parser("sync", parents=[client], help="sync an application")
    sync.add_argument("--app-id", required=True, help="the application's id (or name)")
    sync.add_argument(
        "--wait-status",
        type=_string_slice,
        action=_Extend,
        default=[],
        help="|".join(PIPECD_STATUSES),
    )
    sync.add_argument("--check-interval", type=_duration, default=15.0)
    sync.add_argument("--timeout", type=_duration, default=300.0)
    sync.set_defaults(handler=commands.sync)

    get = apps.add_parser("get", parents=[client], help="show an application")
    get.add_argument("--app-id", required=True)
    get.set_defaults(handler=commands.get)

    listing = apps.add_parser("list", parents=[client], help="list applications")
    listing.add_argument("--app-name")
    listing.add_argument("--app-kind")
    listing.add_argument("--piped-id")
    listing.add_argument("--disabled", action="store_true")
    listing.add_argument("--cursor")
    listing.add_argument("--limit", type=int, default=10)
    listing.add_argument("--label", type=_string_slice, action=_Extend, default=[])
    listing.set_defaults(handler=commands.listing)

    for verb, past in (("delete", "deleted"), ("disable", "disable"), ("enable", "enable")):
        sub = apps.add_parser(verb, parents=[client], help=f"{verb} an application")
        sub.add_argument("--app-id", required=True)
        sub.set_defaults(handler=commands.app_action(verb, past))

    deployment = groups.add_parser("deployment", help="manage deployments")
    deployments = deployment.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    wait = deployments.add_parser(
        "wait-status", parents=[client], help="wait for one of the specified statuses"
    )
    wait.add_argument("--deployment-id", required=True)
    wait.add_argument("--status", type=_string_slice, action=_Extend, required=True)
    wait.add_argument("--check-interval", type=_duration, default=15.0)
    wait.add_argument("--timeout", type=_duration, default=900.0)
    wait.set_defaults(handler=commands.wait_status)

    event = groups.add_parser("event", help="manage events")
    events = event.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    reg = events.add_parser("register", parents=[client], help="register an event")
    reg.add_argument("--name", required=True)
    reg.add_argument("--data", required=True)
    reg.add_argument("--labels", type=_string_to_string, action=_Extend, default={})
    reg.add_argument("--contexts", type=_string_to_string, action=_Extend, default={})
    for flag in ("hash", "title", "message", "url", "author"):
        reg.add_argument(f"--commit-{flag}", default="")
    reg.add_argument("--commit-timestamp", type=int, default=0)
    reg.set_defaults(handler=commands.register_event)

    preview = groups.add_parser(
        "plan-preview", parents=[client], help="show plan preview against the specified commit"
    )
    preview.add_argument("--repo-remote-url", required=True)
    preview.add_argument("--head-branch", required=True)
    preview.add_argument("--head-commit", required=True)
    preview.add_argument("--base-branch", required=True)
    preview.add_argument("--out", help="also write the result as JSON to this file")
    preview.add_argument("--timeout", type=_duration, default=600.0)
    preview.add_argument("--piped-handle-timeout", type=_duration, default=300.0)
    preview.add_argument("--check-interval", type=_duration, default=10.0)
    preview.add_argument("--sort-label-keys", type=_string_slice, action=_Extend, default=[])
    preview.set_defaults(handler=commands.plan_preview)
    return parser


# --- running ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, prog: str = "pipectl") -> int:
    """The `pipectl` console script; `slipway pipectl ARGS` lands here too."""
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (_Parser: 1)
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    try:
        code: int = args.handler(args)
    except (SlipwayError, ValueError, OSError) as exc:
        # ApiError, ApiUnreachable, ConfigError, PipectlFailure; a key file not there.
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway pipectl` (PipeCD's pipectl commands and flags) to the parser."""
    parser = subparsers.add_parser(
        "pipectl",
        help="PipeCD's pipectl commands and flags, over Slipway's API (for CI steps)",
        description="pipectl's commands (application, deployment wait-status, plan-preview, "
        "event register) with its flags, status names, output and exit codes.",
        add_help=False,
    )
    parser.add_argument("pipectl_args", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=lambda args: main(args.pipectl_args, prog="slipway pipectl"))


if __name__ == "__main__":
    sys.exit(main())
