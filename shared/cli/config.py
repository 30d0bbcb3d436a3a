"""`slipway config check PATH...`: load configuration files and say which are wrong.

A directory is searched for application configs (`app.pipecd.yaml`,
`*.pipecd.yaml`, `.pipe.yaml`) and `.pipe/*.yaml` files; a file is loaded by
its `kind:` (so `slipway.yaml` and PipeCD `Piped` files can be checked too).
One line per file, `ok  <path>  (<kind> <name>)` or `ERR <file:line:col: field:
problem>`, warnings below the file they belong to. Exit status 1 when any
file is wrong (with `--strict`, also when any has a warning).
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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config", help="work with configuration files", description="Work with configuration files."
    )
    commands = parser.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="load configuration files and report every one that is wrong",
        description="Load application configs, .pipe/ templates and control configs; "
        "directories are searched recursively. Exits 1 if any file is wrong.",
    )
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a file or directory")
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.add_argument("--json", action="store_true", help="print one JSON object per file")
    check.set_defaults(handler=run_check)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return find_config_files(path)
    return [path]


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
    failed = False
    for root in args.paths:
        files = _files(root)
        if not files:
            failed = True
            _report(args, {"path": str(root), "ok": False, "error": "no configuration files found"})
            continue
        for path in files:
            try:
                config = load_any(path)
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
    return 1 if failed else 0


def _report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    error = result.get("error")
    if args.json:
        if isinstance(error, ConfigFileError):
            result["error"] = {
                "file": error.file,
                "line": error.line,
                "column": error.column,
                "field_path": error.field_path,
                "problem": error.problem,
                "message": str(error),
            }
        elif error is not None:
            result["error"] = {"message": f"{result['path']}: {error}"}
        print(json.dumps(result))
        return
    if error is not None:
        text = str(error) if isinstance(error, ConfigFileError) else f"{result['path']}: {error}"
        print(f"ERR {text}")
        return
    print(f"ok  {result['path']}  ({result['summary']})")
    for warning in result["warnings"]:
        print(f"    warning: {warning}")
    sys.stdout.flush()
