"""`slipway app import`: take over applications PipeCD deploys, so the cut-over is protected.

For each application it lists the cluster's objects that piped applied for the
PipeCD application (`pipecd.dev/managed-by: piped`, `pipecd.dev/application:
<id>`), takes the running commit from their `pipecd.dev/commit-hash` (or
`--running-commit`), hands the fields PipeCD's client-side applies own to
Slipway's field manager and labels the objects (`shared.platform.adoption`),
then records the adoption through the API (`application_adopted`): the
planner takes that commit as running, so the first Slipway deployment is
planned as PipeCD's would be (pipeline, analysis, rollback), not a QUICK_SYNC.

The cluster is reached with the operator's kubeconfig (`--kubeconfig`,
`--context`), as `kubectl` would be; the API only records.

Bulk: `--from-file apps.yaml` registers (unless already registered) and
imports every application listed there, the way the seed's pipectl script
registers its applications:

```yaml
applications:
  - name: account-prd              # the Slipway application (registered if missing)
    repo: config                   # to register it: repository id, path, config file
    path: account/prd
    configFilename: app.pipecd.yaml
    pipecdAppId: 3c6f0b2e-…        # the PipeCD application's id (default: the name)
    runningCommit: ""              # default: the objects' pipecd.dev/commit-hash
```

The file may also be what PipeCD's own `pipectl application list --limit 1000`
printed (`{"applications": [{"id", "name", "git_path": {"repo": {"id"}, "path",
"config_filename"}, …}]}`): each PipeCD application is imported under its name,
with its id and git path, so the cut-over of every application is one pipe.

Exit codes as for every command over the API; 1 when an application could
not be imported (the others still are), saying why.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from shared.errors import ConfigError, PlatformError
from slipway_cli.command import EXIT_FAILED, EXIT_OK, fail, print_json, run_with_client
from slipway_client import ApiClient, ApiError, JsonObject

if TYPE_CHECKING:
    from shared.platform import KubernetesPlatform

__all__ = ["read_import_file", "register_import"]


@dataclass(frozen=True)
class _Wanted:
    """One application to import, from the command line or a `--from-file` entry."""

    name: str
    pipecd_app_id: str = ""
    running_commit: str = ""
    repo: str = ""  # with path: register it first when it is not registered
    path: str = ""
    config_filename: str | None = None


def register_import(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add `slipway app import` (adopt applications PipeCD deployed) under `app`."""
    imports = commands.add_parser(
        "import",
        parents=[common],
        help="take over applications PipeCD deploys (their live objects and running commit)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    imports.add_argument(
        "application", metavar="NAME", nargs="?", help="the application's name or id"
    )
    imports.add_argument(
        "--from-file", type=Path, metavar="FILE", help="import (and register) those listed"
    )
    imports.add_argument(
        "--pipecd-app-id", default="", help="the PipeCD application's id (default: NAME)"
    )
    imports.add_argument(
        "--running-commit",
        default="",
        help="the commit running now (default: the objects' pipecd.dev/commit-hash)",
    )
    imports.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG", "") or str(Path.home() / ".kube" / "config"),
        help="the cluster's kubeconfig (default: $KUBECONFIG, else ~/.kube/config)",
    )
    imports.add_argument("--context", default=None, help="the kubeconfig's context")
    imports.set_defaults(handler=run_with_client(_import))


def _import(client: ApiClient, args: argparse.Namespace) -> int:
    if (args.application is None) == (args.from_file is None):
        raise argparse.ArgumentTypeError("give either NAME or --from-file")
    if args.from_file is not None:
        wanted = read_import_file(args.from_file)
    else:
        wanted = [_Wanted(args.application, args.pipecd_app_id, args.running_commit)]
    return asyncio.run(_import_all(client, args, wanted))


async def _import_all(
    client: ApiClient, args: argparse.Namespace, wanted: Sequence[_Wanted]
) -> int:
    # Imported here: the Kubernetes client takes most of a second to load, which every other
    # `slipway app` command would pay (slipway_cli._COMMANDS loads this module for them).
    from shared.platform import KubernetesPlatform
    from shared.platform.adoption import AdoptionRefused

    failed = 0
    answers: list[JsonObject] = []
    async with KubernetesPlatform(args.kubeconfig, args.context) as cluster:
        for one in wanted:
            try:
                answer = await _import_one(client, cluster, one)
            except (AdoptionRefused, PlatformError, ApiError) as exc:
                failed += 1
                fail(f"{one.name}: not imported: {exc}")
                continue
            answers.append(answer)
            if not args.json:
                print(
                    f"imported {one.name}: {len(answer['resources'])} objects, running commit "
                    f"{answer['running_commit_hash'][:12]}"
                )
    if args.json:
        print_json(answers)
    return EXIT_FAILED if failed else EXIT_OK


async def _import_one(client: ApiClient, cluster: KubernetesPlatform, one: _Wanted) -> JsonObject:
    try:
        app = client.get_application(one.name)
    except ApiError as exc:
        if exc.status != 404 or not (one.repo and one.path):
            raise
        app = client.register_application(
            name=one.name,
            repository_id=one.repo,
            path=one.path,
            config_filename=one.config_filename,
        )
    application_id = str(app["application_id"])
    from shared.platform.adoption import running_commit

    found = await cluster.pipecd_objects(one.pipecd_app_id or one.name)
    commit = running_commit([item for _, item in found], one.running_commit)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    keys = await cluster.take_over(found, application_id, now=now)
    return client.adopt_application(
        application_id,
        running_commit_hash=commit,
        resources=keys,
        pipecd_application_id=one.pipecd_app_id or one.name,
    )


_FILE_FIELDS = {
    "name": "name",
    "pipecdAppId": "pipecd_app_id",
    "runningCommit": "running_commit",
    "repo": "repo",
    "path": "path",
    "configFilename": "config_filename",
}


def read_import_file(path: Path) -> list[_Wanted]:
    """The applications of a `--from-file` YAML, or of PipeCD's `pipectl application list`
    JSON; a ConfigError naming the entry and field."""
    try:
        document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    entries = document.get("applications") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected `applications:`, a list of applications")
    if all(isinstance(entry, dict) and "git_path" in entry for entry in entries):
        return [
            _from_pipecd(f"{path}: applications[{index}]", entry)
            for index, entry in enumerate(entries)
        ]
    wanted: list[_Wanted] = []
    for index, entry in enumerate(entries):
        at = f"{path}: applications[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected a mapping")
        unknown = sorted(set(entry) - set(_FILE_FIELDS))
        if unknown:
            raise ConfigError(
                f"{at}: unknown field {unknown[0]!r} (known: {', '.join(_FILE_FIELDS)})"
            )
        for key, value in entry.items():
            if not isinstance(value, str):
                raise ConfigError(f"{at}.{key}: expected a string")
        if not entry.get("name"):
            raise ConfigError(f'{at}: required: "name"')
        wanted.append(_Wanted(**{_FILE_FIELDS[k]: v for k, v in entry.items()}))
    return wanted


def _from_pipecd(at: str, entry: dict[str, Any]) -> _Wanted:
    """One PipeCD `Application` as Go's encoding/json prints it (snake_case; empty fields
    left out); only its id, name and git path are read."""

    def text(value: Any, field: str, *, required: bool = True) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value):
            raise ConfigError(f"{at}.{field}: expected a non-empty string")
        return value

    git_path = entry["git_path"]
    if not isinstance(git_path, dict) or not isinstance(git_path.get("repo"), dict):
        raise ConfigError(f"{at}.git_path: expected a mapping with `repo`")
    return _Wanted(
        name=text(entry.get("name"), "name"),
        pipecd_app_id=text(entry.get("id"), "id"),
        repo=text(git_path["repo"].get("id"), "git_path.repo.id"),
        path=text(git_path.get("path"), "git_path.path"),
        config_filename=text(
            git_path.get("config_filename"), "git_path.config_filename", required=False
        )
        or None,
    )
