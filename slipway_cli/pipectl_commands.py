"""What each `slipway pipectl` command does: its API calls, pipectl's messages and exit codes.

One function per command, each taking the parsed flags (`slipway_cli.pipectl`
builds the parser, with pipectl's flags) and returning the exit code, or
raising `PipectlFailure` with pipectl's wording. Translations of pipectl's
words and shapes are `slipway_cli.pipectl_wire`'s.
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
from typing import Any, Final

from shared.errors import ConfigError, SlipwayError
from shared.git import GitCache, GitError, redact
from shared.planning.preview import compute_preview, remote_url
from slipway_cli.pipectl_wire import (
    KIND_KUBERNETES,
    add_labels,
    application_json,
    base_url,
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

__all__ = [
    "APPLICATION_KINDS",
    "DEFAULT_CONFIG_FILENAME",
    "EXIT_FAILED",
    "EXIT_OK",
    "REGISTER_EVENT_OPERATION",
    "PipectlFailure",
    "add",
    "app_action",
    "get",
    "listing",
    "log",
    "plan_preview",
    "register_event",
    "sync",
    "wait_status",
]

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


def log(message: str, level: str = "INFO") -> None:
    """A pipectl log line: on stderr, as its zap logger writes them."""
    print(f"{level}\t{message}", file=sys.stderr, flush=True)


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


def add(args: argparse.Namespace) -> int:
    """`application add`: register the application through the API."""
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


def sync(args: argparse.Namespace) -> int:
    """`application sync`: a sync, its deployment confirmed, then `--wait-status`."""
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


def wait_status(args: argparse.Namespace) -> int:
    """`deployment wait-status`: until the deployment reaches one of `--status`."""
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


def get(args: argparse.Namespace) -> int:
    """`application get`: PipeCD's `model.Application` JSON on stdout."""
    try:
        app = _client(args).get_application(args.app_id)
    except ApiError as exc:
        raise PipectlFailure(f"failed to get application: {_api_reason(exc)}") from exc
    print(_go_json(application_json(app)))
    return EXIT_OK


def listing(args: argparse.Namespace) -> int:
    """`application list`: a page of PipeCD's `model.Application` JSON on stdout."""
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


def app_action(verb: str, past: str) -> Callable[[argparse.Namespace], int]:
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


def register_event(args: argparse.Namespace) -> int:
    """`event register`: through the API's `registerEvent` route (the event watcher's)."""
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


def plan_preview(args: argparse.Namespace) -> int:
    """`plan-preview`: planned here from a clone of the remote; pipectl's text (and JSON)."""
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
