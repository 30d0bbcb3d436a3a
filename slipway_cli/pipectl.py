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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from shared.errors import ConfigError, SlipwayError
from shared.git import GitCache, GitError, redact
from shared.planning.preview import compute_preview, remote_url
from slipway_cli.pipectl_wire import (
    KIND_KUBERNETES,
    PIPECD_STATUSES,
    add_labels,
    application_json,
    base_url,
    go_duration,
    list_labels,
    pipecd_status,
    readable_result,
    readable_text,
    slipway_statuses,
)
from slipway_cli.waiting import DEPLOYMENT_STATUSES, TERMINAL_STATUSES, wait_for_status
from slipway_client import (
    API_KEY_ENV,
    API_URL_ENV,
    ApiClient,
    ApiError,
    JsonObject,
)

__all__ = ["main", "register"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
"""pipectl's only failure code: `log.Fatal` exits 1 for every error."""

APPLICATION_KINDS: Final = ("KUBERNETES", "TERRAFORM", "LAMBDA", "CLOUDRUN", "ECS")
"""model.ApplicationKind's names; Slipway deploys the first."""

DEFAULT_CONFIG_FILENAME: Final = "app.pipecd.yaml"
REGISTER_EVENT_OPERATION: Final = "registerEvent"
"""The OpenAPI operationId of the route `event register` calls (pipectl's RPC name)."""
_EVENT_CONTEXT_KEY: Final = re.compile(r"^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$")
_CONFIRM_POLL_S: Final = 1.0
"""How often a sync's deployment is looked for (pipectl waits a whole check interval)."""


class PipectlFailure(SlipwayError):
    """A pipectl command failed; the message is what pipectl would say."""


class _Parser(argparse.ArgumentParser):
    """argparse that fails as cobra does: `Error: …` on stderr, exit 1 (never argparse's 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"Error: {message}", file=sys.stderr)
        print(f"Run '{self.prog} --help' for usage.", file=sys.stderr)
        raise SystemExit(EXIT_FAILED)


def log(message: str, level: str = "INFO") -> None:
    """A pipectl log line: on stderr, as its zap logger writes them."""
    print(f"{level}\t{message}", file=sys.stderr, flush=True)


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
    add.set_defaults(handler=_add)

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
    sync.set_defaults(handler=_sync)

    get = apps.add_parser("get", parents=[client], help="show an application")
    get.add_argument("--app-id", required=True)
    get.set_defaults(handler=_get)

    listing = apps.add_parser("list", parents=[client], help="list applications")
    listing.add_argument("--app-name")
    listing.add_argument("--app-kind")
    listing.add_argument("--piped-id")
    listing.add_argument("--disabled", action="store_true")
    listing.add_argument("--cursor")
    listing.add_argument("--limit", type=int, default=10)
    listing.add_argument("--label", type=_string_slice, action=_Extend, default=[])
    listing.set_defaults(handler=_list)

    for verb, past in (("delete", "deleted"), ("disable", "disable"), ("enable", "enable")):
        sub = apps.add_parser(verb, parents=[client], help=f"{verb} an application")
        sub.add_argument("--app-id", required=True)
        sub.set_defaults(handler=_app_action(verb, past))

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
    wait.set_defaults(handler=_wait_status)

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
    reg.set_defaults(handler=_register_event)

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
    preview.set_defaults(handler=_plan_preview)
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


def _client(args: argparse.Namespace) -> ApiClient:
    if args.address:
        url = base_url(args.address, insecure=args.insecure)
    elif os.environ.get(API_URL_ENV):
        url = os.environ[API_URL_ENV]
    else:
        raise ConfigError(f"address must be set (--address, or ${API_URL_ENV})")
    if args.cert_file:
        # The stdlib's default TLS context reads it when the request is made; this process
        # is one pipectl command, so setting it for the process is setting it for the call.
        os.environ["SSL_CERT_FILE"] = args.cert_file
    key = args.api_key
    if not key and args.api_key_file:
        key = Path(args.api_key_file).read_text().strip()
    key = key or os.environ.get(API_KEY_ENV)
    if not key:
        raise ConfigError(f"either api-key or api-key-file must be set (or ${API_KEY_ENV})")
    return ApiClient(url, key=key)


def _add(args: argparse.Namespace) -> int:
    if args.app_kind not in APPLICATION_KINDS:
        raise PipectlFailure(f"unsupported application kind {args.app_kind}")
    if args.app_kind != KIND_KUBERNETES:
        raise PipectlFailure(
            f"failed to add application: Slipway deploys {KIND_KUBERNETES} applications only, "
            f"not {args.app_kind}"
        )
    if args.description:
        log(
            "--description is not stored: Slipway shows the config file's spec.description",
            "WARN",
        )
    try:
        added = _client(args).register_application(
            name=args.app_name,
            repository_id=args.repo_id,
            path=args.app_dir,
            config_filename=args.config_file_name,
            platform_provider=args.platform_provider,
            labels=add_labels(args.labels),
        )
    except ApiError as exc:
        raise PipectlFailure(f"failed to add application: {_api_reason(exc)}") from exc
    log(f"Successfully added application id = {added['application_id']}")
    return EXIT_OK


def _sync(args: argparse.Namespace) -> int:
    wanted = _statuses(args.wait_status)
    client = _client(args)
    try:
        accepted = client.sync_application(args.app_id)
    except ApiError as exc:
        raise PipectlFailure(f"failed to sync application {_api_reason(exc)}") from exc
    log("Sent a request to sync application and waiting to be accepted...")
    deployment_id = accepted["deployment_id"]
    triggered = wait_for_status(
        client,
        deployment_id,
        DEPLOYMENT_STATUSES,
        timeout_s=args.timeout,
        poll_s=min(args.check_interval, _CONFIRM_POLL_S),
    )
    if triggered.deployment is None:
        raise PipectlFailure(
            f"context deadline exceeded: the sync was recorded but deployment {deployment_id} "
            f"was not triggered within {args.timeout:g} s (is the gitwatcher running?)"
        )
    log(f"Successfully triggered deployment {deployment_id}")
    if not wanted:
        return EXIT_OK
    log("Waiting until the deployment reaches one of the specified statuses")
    return _wait(client, deployment_id, wanted, args)


def _wait_status(args: argparse.Namespace) -> int:
    wanted = _statuses(args.status)
    client = _client(args)
    try:
        client.get_deployment(args.deployment_id)
    except ApiError as exc:
        if exc.status == 404:
            raise PipectlFailure(f'deployment "{args.deployment_id}" not found') from exc
        raise
    return _wait(client, args.deployment_id, wanted, args)


def _statuses(names: Sequence[str]) -> tuple[str, ...]:
    try:
        return slipway_statuses(names)
    except ValueError as exc:
        raise PipectlFailure(f"invalid deployment status: {exc}") from exc


def _wait(
    client: ApiClient, deployment_id: str, wanted: Sequence[str], args: argparse.Namespace
) -> int:
    seen: list[str] = []

    def progress(deployment: JsonObject | None) -> None:
        status = deployment["status"] if deployment else "not triggered"
        if seen != [status]:
            seen[:] = [status]
            log(f"Deployment {deployment_id} is at {pipecd_status(status)}, waiting...")

    outcome = wait_for_status(
        client,
        deployment_id,
        wanted,
        timeout_s=args.timeout,
        poll_s=args.check_interval,
        progress=progress,
    )
    deployment = outcome.deployment
    status = pipecd_status(deployment["status"]) if deployment else "not triggered"
    if outcome.wanted:
        log(f"Deployment is at {status} status")
        return EXIT_OK
    if outcome.timed_out:
        raise PipectlFailure(
            f"context deadline exceeded (after {outcome.waited_s:.0f} s the deployment is {status})"
        )
    assert deployment is not None and deployment["status"] in TERMINAL_STATUSES
    reason = f": {deployment['reason']}" if deployment.get("reason") else ""
    raise PipectlFailure(
        f"deployment {deployment_id} ended {status}{reason}; it can no longer reach "
        + "|".join(pipecd_status(s) for s in wanted)
    )


def _get(args: argparse.Namespace) -> int:
    try:
        app = _client(args).get_application(args.app_id)
    except ApiError as exc:
        raise PipectlFailure(f"failed to get application: {_api_reason(exc)}") from exc
    print(_go_json(application_json(app)))
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    if args.app_kind and args.app_kind not in APPLICATION_KINDS:
        raise PipectlFailure("invalid application kind")
    if args.app_kind and args.app_kind != KIND_KUBERNETES:
        print(_go_json({}))  # Slipway has no application of another kind
        return EXIT_OK
    query: list[tuple[str, str]] = [
        ("limit", str(max(1, args.limit))),
        ("disabled", "true" if args.disabled else "false"),
    ]
    if args.app_name:
        query.append(("name", args.app_name))
    if args.cursor:
        query.append(("cursor", args.cursor))
    query.extend(("label", f"{k}={v}") for k, v in list_labels(args.label).items())
    try:
        page = _client(args).request("GET", "/applications", query=query)
    except ApiError as exc:
        raise PipectlFailure(f"failed to list application: {_api_reason(exc)}") from exc
    answer = {
        "applications": [application_json(app) for app in page["items"]] or None,
        "cursor": page.get("next_cursor") or None,
    }
    print(_go_json({k: v for k, v in answer.items() if v is not None}))
    return EXIT_OK


def _app_action(verb: str, past: str) -> Callable[[argparse.Namespace], int]:
    """`application delete|disable|enable`: one API call, pipectl's message either way
    (`past` is pipectl's own wording: "deleted", "disable", "enable")."""

    def run(args: argparse.Namespace) -> int:
        client = _client(args)
        call = {
            "delete": client.delete_application,
            "disable": client.disable_application,
            "enable": client.enable_application,
        }[verb]
        try:
            app = call(args.app_id)
        except ApiError as exc:
            raise PipectlFailure(f"failed to {verb} application: {_api_reason(exc)}") from exc
        log(f"Successfully {past} application id = {app['application_id']}")
        return EXIT_OK

    return run


def _register_event(args: argparse.Namespace) -> int:
    for key in args.contexts:
        if not _EVENT_CONTEXT_KEY.match(key):
            raise PipectlFailure(
                f"failed to validate event context: invalid format key '{key}', should be "
                "^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$"
            )
    client = _client(args)
    route = _operation(client, REGISTER_EVENT_OPERATION)
    if route is None:
        raise PipectlFailure(
            "failed to register event: not supported yet by this Slipway API (it has no "
            f"{REGISTER_EVENT_OPERATION} route: the event watcher is not part of this server)"
        )
    method, path = route
    body: JsonObject = {"name": args.name, "data": args.data}
    for field, value in (
        ("labels", args.labels),
        ("contexts", args.contexts),
        ("commit_hash", args.commit_hash),
    ):
        if value:
            body[field] = value
    unsent = [
        f"--commit-{flag}"
        for flag in ("title", "message", "url", "author", "timestamp")
        if getattr(args, f"commit_{flag}")
    ]
    if unsent:
        log(f"{', '.join(unsent)}: not kept by Slipway (the commit hash is)", "WARN")
    try:
        answer = client.request(method, path, body=body)
    except ApiError as exc:
        raise PipectlFailure(f"failed to register event: {_api_reason(exc)}") from exc
    event_id = answer.get("event_id") or answer.get("id") or ""
    log(f"Successfully registered event\t{json.dumps({'id': event_id})}")
    return EXIT_OK


def _operation(client: ApiClient, operation_id: str) -> tuple[str, str] | None:
    """The method and path (below /api/v1) of the API's route named `operation_id`, if any."""
    document = client.request("GET", "/openapi.json")
    for path, methods in (document.get("paths") or {}).items():
        for method, operation in (methods or {}).items():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                return method.upper(), str(path).removeprefix("/api/v1")
    return None


def _plan_preview(args: argparse.Namespace) -> int:
    remote = remote_url(args.repo_remote_url)
    try:
        with tempfile.TemporaryDirectory(prefix="pipectl-plan-preview-") as cache_dir:
            preview = asyncio.run(
                asyncio.wait_for(
                    compute_preview(
                        GitCache(cache_dir),
                        remote,
                        base_branch=args.base_branch,
                        head_commit=args.head_commit,
                    ),
                    timeout=args.timeout,
                )
            )
    except (GitError, TimeoutError) as exc:
        message = str(exc) or f"no result within {args.timeout:g} s"
        print(f"Failed to request plan-preview: {message} ({redact(remote)})")
        raise PipectlFailure(message) from exc
    result = readable_result(preview.to_dict(), args.sort_label_keys)
    print(readable_text(result), end="")
    if args.out:
        Path(args.out).write_text(json.dumps(result, separators=(",", ":")))
    return EXIT_OK


def _api_reason(exc: ApiError) -> str:
    field = f" [{exc.field}]" if exc.field else ""
    return f"{exc} (HTTP {exc.status} {exc.code}{field})"


def _go_json(value: Any) -> str:
    """As Go's `json.Marshal`: compact, maps' keys sorted (structs keep their field order)."""
    return json.dumps(_sorted_maps(value), separators=(",", ":"), ensure_ascii=False)


def _sorted_maps(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _sorted_maps(v) if k != "labels" else dict(sorted(v.items()))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_sorted_maps(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
