"""pipectl's words and shapes, translated to and from Slipway's API (pure; no I/O).

`slipway pipectl` (`slipway_cli.pipectl`) lets CI steps written for PipeCD's
`pipectl` run unchanged; this module holds every translation it needs, so
each has one home and a unit test:

- flag values: Go durations (`15s`, `1m30s`), pipectl's label syntaxes
  (`k=v,k2=v2` for `add`, `k:v` for `list`), deployment statuses with their
  `DEPLOYMENT_` prefix, and `--address`/`--insecure` as a base URL;
- answers: a Slipway application as PipeCD's `model.Application` JSON, as Go's
  `encoding/json` prints the generated struct (snake_case names, empty fields
  left out, enums as their numbers), and a plan preview as pipectl's
  `ReadableResult` (its text and its `--out` JSON).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from shared.errors import ConfigError
from shared.events.vocabulary import DeploymentStatus, SyncState

PIPECD_STATUS_PREFIX: Final = "DEPLOYMENT_"

PIPECD_STATUSES: Final = tuple(f"{PIPECD_STATUS_PREFIX}{s.value}" for s in DeploymentStatus)
"""pipectl's deployment status names (model.DeploymentStatus), one per Slipway status."""

SYNC_STATUS_NUMBERS: Final = {
    SyncState.UNKNOWN: 0,
    SyncState.SYNCED: 1,
    SyncState.DEPLOYING: 2,
    SyncState.OUT_OF_SYNC: 3,
}
"""model.ApplicationSyncStatus's numbers (INVALID_CONFIG = 4 has no Slipway state)."""

KIND_KUBERNETES: Final = "KUBERNETES"
"""The one application kind Slipway deploys (its number in model.ApplicationKind is 0)."""

ENV_LABEL: Final = "env"
"""The label pipectl's plan-preview prints as the application's environment."""

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def go_duration(text: str) -> float:
    """Seconds in a Go duration (`time.ParseDuration`: `300ms`, `15s`, `1h30m`); else an error."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    total, at = 0.0, 0
    while at < len(body):
        match = _DURATION_PART.match(body, at)
        if match is None:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        at = match.end()
    if not body or at != len(body):
        raise ValueError(f'time: invalid duration "{text}"')
    return -total if text.startswith("-") else total


def slipway_statuses(names: Iterable[str]) -> tuple[str, ...]:
    """pipectl's status names as Slipway's (`DEPLOYMENT_SUCCESS` → `SUCCESS`).

    As pipectl: the exact upper-case names only; anything else is `invalid status X`.
    """
    out = []
    for name in names:
        if name not in PIPECD_STATUSES:
            raise ValueError(f"invalid status {name}")
        out.append(name.removeprefix(PIPECD_STATUS_PREFIX))
    return tuple(out)


def pipecd_status(status: str) -> str:
    """Slipway's deployment status as pipectl names it (`SUCCESS` → `DEPLOYMENT_SUCCESS`)."""
    return f"{PIPECD_STATUS_PREFIX}{status}"


def add_labels(text: str) -> dict[str, str]:
    """`application add --labels`: `k=v,k2=v2`; as pipectl, a part without one `=` is skipped."""
    labels: dict[str, str] = {}
    for part in text.split(",") if text else ():
        pieces = part.split("=")
        if len(pieces) == 2:
            labels[pieces[0]] = pieces[1]
    return labels


def list_labels(values: Sequence[str]) -> dict[str, str]:
    """`application list --label`: each `KEY:VALUE` (comma-separated or repeated), as pipectl."""
    labels: dict[str, str] = {}
    for value in values:
        for item in value.split(","):
            key, sep, rest = item.partition(":")
            if sep:
                labels[key] = rest
    return labels


def base_url(address: str, *, insecure: bool) -> str:
    """The API's base URL for pipectl's `--address` (gRPC's `host:port`).

    pipectl dials TLS unless `--insecure`; so `https://host:port`, or `http://`
    with `--insecure`. An address that already has a scheme is taken as it is.
    """
    if "://" in address:
        return address
    if not address or "/" in address:
        raise ConfigError(f"--address {address!r} must be host:port (or a URL)")
    return f"{'http' if insecure else 'https'}://{address}"


def _unix(value: str | None) -> int:
    if not value:
        return 0
    return int(datetime.fromisoformat(value).timestamp())


def _without_empty(value: Mapping[str, Any]) -> dict[str, Any]:
    """Go's `omitempty`: "" , 0, false, empty maps and absent messages are left out."""
    return {k: v for k, v in value.items() if v not in ("", 0, False, None, {}, [])}


def application_json(app: Mapping[str, Any]) -> dict[str, Any]:
    """A Slipway application (the API's `ApplicationResource`) as pipectl prints `Application`.

    Slipway has no pipeds, projects or kinds other than KUBERNETES (0, left
    out as Go leaves out zeros); the rest maps field for field. Times are Unix
    seconds, as PipeCD stores them.
    """
    sync = app.get("sync") or {}
    last = sync.get("last_deployment")
    state = SyncState(app.get("sync_state", SyncState.UNKNOWN))
    triggered = None
    succeeded = None
    if last:
        triggered = _without_empty(
            {"deployment_id": last["deployment_id"], "started_at": _unix(last.get("at"))}
        )
        if last.get("status") == DeploymentStatus.SUCCESS:
            succeeded = _without_empty(
                {"deployment_id": last["deployment_id"], "completed_at": _unix(last.get("at"))}
            )
    return _without_empty(
        {
            "id": app["application_id"],
            "name": app["name"],
            "git_path": _without_empty(
                {
                    "repo": {"id": app["repository_id"]},
                    "path": app["path"],
                    "config_filename": app["config_filename"],
                }
            ),
            "platform_provider": app.get("platform_provider", ""),
            "description": app.get("description", ""),
            "labels": dict(app.get("labels") or {}),
            "most_recently_successful_deployment": succeeded,
            "most_recently_triggered_deployment": triggered,
            "sync_state": _without_empty(
                {
                    "status": SYNC_STATUS_NUMBERS[state],
                    "short_reason": sync.get("reason", ""),
                    "reason": sync.get("reason", ""),
                    "head_deployment_id": (last or {}).get("deployment_id", ""),
                    "timestamp": _unix(sync.get("since")),
                }
            ),
            "deploying": state is SyncState.DEPLOYING,
            "disabled": bool(app.get("disabled")),
            "created_at": _unix(app.get("registered_at")),
            "updated_at": _unix(app.get("updated_at")),
        }
    )


# --- plan-preview ----------------------------------------------------------------------------


def readable_result(
    preview: Mapping[str, Any], sort_label_keys: Sequence[str] = ()
) -> dict[str, Any]:
    """Slipway's preview (`Preview.to_dict()`) as pipectl's `ReadableResult`.

    Sorted as pipectl sorts: by the given label keys, then by application name.
    Slipway plans in the CLI (or its API), so there are never failed pipeds.
    """

    def key(result: Mapping[str, Any]) -> tuple[str, ...]:
        labels = result.get("labels") or {}
        return (*(labels.get(k, "") for k in sort_label_keys), result["application"])

    def info(result: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "ApplicationID": result.get("application_id", ""),
            "ApplicationName": result["application"],
            "ApplicationURL": "",
            "ApplicationKind": KIND_KUBERNETES,
            "ApplicationDirectory": posixpath.dirname(result["config_path"]),
            "Env": (result.get("labels") or {}).get(ENV_LABEL, ""),
            "PlannedPluginNames": "",
            "AllPluginNames": "",
        }

    applications = [
        {
            **info(result),
            "SyncStrategy": str(result["strategy"]).upper(),
            "PlanSummary": result["summary"],
            "PlanDetails": result.get("details") or "",
            "NoChange": not (result.get("details") or "").strip(),
            "PluginPlanResults": None,
        }
        for result in sorted(preview["results"], key=key)
    ]
    failures = [
        {
            **info(result),
            "Reason": result["error"],
            "PlanDetails": "",
            "PluginPlanResults": None,
        }
        for result in sorted(preview["failures"], key=key)
    ]
    return {
        "Applications": applications or None,
        "FailureApplications": failures or None,
        "FailurePipeds": None,
    }


def readable_text(result: Mapping[str, Any]) -> str:
    """`ReadableResult.String()`: what pipectl plan-preview prints (and PRs quote), verbatim."""
    applications = result["Applications"] or []
    failures = result["FailureApplications"] or []
    out: list[str] = []
    if not applications and not failures:
        return (
            "\nThere are no updated applications. It means no deployment will be triggered "
            "once this pull request got merged.\n"
        )
    if applications:
        many = len(applications) > 1
        out.append(
            f"\nHere are plan-preview for {len(applications)} applications:\n"
            if many
            else "\nHere are plan-preview for 1 application:\n"
        )
        for index, app in enumerate(applications, 1):
            out.append(_title(index, app))
            out.append(f"  sync strategy: {app['SyncStrategy']}\n")
            out.append(f"  summary: {app['PlanSummary']}\n")
            out.append(
                f"  details:\n\n  ---DETAILS_BEGIN---\n{app['PlanDetails']}\n  ---DETAILS_END---\n"
            )
    if failures:
        out.append(
            "\nNOTE: An error occurred while building plan-preview for the following "
            + (f"{len(failures)} applications:\n" if len(failures) > 1 else "application:\n")
        )
        for index, app in enumerate(failures, 1):
            out.append(_title(index, app))
            out.append(f"  reason: {app['Reason']}\n")
    return "".join(out)


def _title(index: int, app: Mapping[str, Any]) -> str:
    if app["Env"]:
        return (
            f"\n{index}. app: {app['ApplicationName']}, env: {app['Env']}, "
            f"kind: {app['ApplicationKind']}\n"
        )
    return f"\n{index}. app: {app['ApplicationName']}, kind: {app['ApplicationKind']}\n"
