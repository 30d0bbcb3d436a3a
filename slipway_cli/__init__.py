"""The `slipway` command line (DESIGN §10).

Each sub-command lives in its own module with a `register(subparsers)` that
adds its parser and sets `handler`; `main` only dispatches. Add a command by
adding a module and one line to `_COMMANDS`, which names the module each command's
run imports (and no other). What the commands over the API
share is in `command` (exit codes, common options, the API's failures as exit
codes, output) and `waiting` (`--wait-status`, progress, the outcome); the
API client itself is its own package, `slipway_client`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from shared.errors import ConfigError, SlipwayError

EXIT_BROKEN_PIPE = 141
"""Whoever read our output stopped early (`| head`): 128 + SIGPIPE, what a shell reports for
a Unix tool that SIGPIPE ended. Not 0: the command did not finish (`logs --follow` would
otherwise claim a deployment it never saw end), and `set -o pipefail` can tell."""

_COMMANDS: dict[str, str] = {
    "analysis": "slipway_cli.analysis",
    "apikey": "slipway_cli.apikey",
    "app": "slipway_cli.app",
    "chain": "slipway_cli.chain",
    "config": "slipway_cli.config",
    "deadletters": "slipway_cli.deadletters",
    "deployment": "slipway_cli.deployment",
    "events": "slipway_cli.events",
    "demo": "slipway_cli.demo",
    "encrypt": "slipway_cli.encrypt",
    "event": "slipway_cli.event",
    "insights": "slipway_cli.insights",
    "kubesim": "slipway_cli.kubesim",
    "migrate": "slipway_cli.migrate",
    "pipectl": "slipway_cli.pipectl",
    "plan-preview": "slipway_cli.plan_preview",
    "replay": "slipway_cli.replay",
    "up": "slipway_cli.up",
}
"""Each command's name and the module that registers it. A run imports only its own
command's module: the modules between them import the database driver, NATS, kubesim and
the planner, seconds of start-up that `slipway deployment get` has no use for."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone (what a run of it needs)."""
    parser = argparse.ArgumentParser(
        prog="slipway", description="GitOps continuous delivery with progressive delivery."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [_COMMANDS[command]] if command in _COMMANDS else _COMMANDS.values()
    for module_name in modules:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command `argv` runs, when it names one first (the top level has no other
    options than --help); None for `--help`, no command or an unknown one, which need
    every command's parser to list them."""
    return argv[0] if argv and argv[0] in _COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `slipway` command line; its exit code."""
    arguments = sys.argv[1:] if argv is None else argv
    args = build_parser(_command_in(arguments)).parse_args(arguments)
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # here, so a closed pipe is met below and not at interpreter exit
    except BrokenPipeError:
        return _reader_gone()
    except ConfigError as exc:
        print(f"slipway: configuration error: {exc}", file=sys.stderr)
        return 2
    except SlipwayError as exc:
        print(f"slipway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def _reader_gone() -> int:
    """Exit quietly once stdout's reader has gone, as Unix tools do on SIGPIPE.

    Python ignores SIGPIPE, so a write to a closed pipe raises `BrokenPipeError`
    wherever it happens; every command ends here. Whatever is still buffered
    for stdout cannot be written: it is pointed at /dev/null so the flush at
    exit does not raise (and print a traceback) a second time.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
