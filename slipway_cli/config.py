"""`slipway config check PATH...`: load configuration files and say which are wrong.

A directory is searched for application configs (`app.pipecd.yaml`,
`*.pipecd.yaml`, `.pipe.yaml`) and `.pipe/*.yaml` files; a file is loaded by
its `kind:` (so `slipway.yaml` and PipeCD `Piped` files can be checked too).
An application config is also checked against what it refers to, as the
planner checks it: the `.pipe/` AnalysisTemplates of its repository (the
nearest parent directory with `.pipe/` or `.git`) that its ANALYSIS stages
name, the `appArgs` they use, and the traffic routing its K8S_TRAFFIC_ROUTING
stages need. One line per file, `ok  <path>  (<kind> <name>)`, or one `ERR
<file:line:col: field: problem>` line for every problem of a wrong file;
warnings below the file they belong to. Exit status 2 (a configuration error,
as the README's exit codes say) when any file is wrong (with `--strict`, also
when any has a warning).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.config import (
    AnalysisTemplateConfig,
    AnyConfig,
    ApplicationConfig,
    ConfigFileError,
    ControlConfig,
    EventWatcherFileConfig,
    find_config_files,
    load_any,
)
from slipway_cli.command import EXIT_OK, EXIT_USAGE


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway config` (check configuration files) to the parser."""
    parser = subparsers.add_parser(
        "config", help="work with configuration files", description="Work with configuration files."
    )
    commands = parser.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="load configuration files and report every one that is wrong",
        description="Load application configs, .pipe/ templates and control configs; "
        "directories are searched recursively; application configs are checked against "
        "the .pipe/ templates they use. Prints every problem; exits 2 if any file is wrong.",
    )
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a file or directory")
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.add_argument("--json", action="store_true", help="print one JSON object per file")
    check.set_defaults(handler=run_check)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return find_config_files(path)
    return [path]


def repository_root(file: Path) -> Path | None:
    """The repository `file` is in: the nearest parent with `.pipe/` (where PipeCD keeps
    the shared templates) or `.git`; None when there is none."""
    for directory in file.resolve().parents:
        if (directory / ".pipe").is_dir() or (directory / ".git").exists():
            return directory
    return None


def _summary(config: AnyConfig) -> str:
    if isinstance(config, ApplicationConfig):
        return f"KubernetesApp {config.name}"
    if isinstance(config, AnalysisTemplateConfig):
        spec = config.spec
        count = len(spec.metrics) + len(spec.logs) + len(spec.https)
        return f"AnalysisTemplate {count} template{'s' if count != 1 else ''}"
    if isinstance(config, EventWatcherFileConfig):
        count = len(config.spec.events)
        return f"EventWatcher {count} event{'s' if count != 1 else ''}"
    assert isinstance(config, ControlConfig)
    return f"{config.source_kind} {config.spec.project}"


def run_check(args: argparse.Namespace) -> int:
    """Check every config file under the given paths; 1 if any fails to load."""
    failed = False
    for root in args.paths:
        files = _files(root)
        if not files:
            failed = True
            _report(args, {"path": str(root), "ok": False, "error": "no configuration files found"})
            continue
        for path in files:
            try:
                config = load_any(path, references=True, repo_root=repository_root(path))
            except ConfigFileError as exc:
                failed = True
                _report(args, {"path": str(path), "ok": False, "error": exc})
                continue
            warnings = [str(w) for w in config.warnings]
            failed = failed or (args.strict and bool(warnings))
            _report(
                args,
                {"path": str(path), "ok": True, "summary": _summary(config), "warnings": warnings},
            )
    return EXIT_USAGE if failed else EXIT_OK  # usage or configuration: 2


def _report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    error = result.get("error")
    if args.json:
        if isinstance(error, ConfigFileError):
            # `error` is the first problem (as before), `errors` all of them.
            result["errors"] = [_as_json(e) for e in error.errors]
            result["error"] = result["errors"][0]
        elif error is not None:
            result["error"] = {"message": f"{result['path']}: {error}"}
        print(json.dumps(result))
        return
    if isinstance(error, ConfigFileError):
        for each in error.errors:
            print(f"ERR {each}")
        return
    if error is not None:
        print(f"ERR {result['path']}: {error}")
        return
    print(f"ok  {result['path']}  ({result['summary']})")
    for warning in result["warnings"]:
        print(f"    warning: {warning}")
    sys.stdout.flush()


def _as_json(error: ConfigFileError) -> dict[str, Any]:
    return {
        "file": error.file,
        "line": error.line,
        "column": error.column,
        "field_path": error.field_path,
        "problem": error.problem,
        "message": str(error),
    }
