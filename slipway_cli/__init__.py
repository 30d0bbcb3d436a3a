"""The `slipway` command line (DESIGN §10).

Each sub-command lives in its own module with a `register(subparsers)` that
adds its parser and sets `handler`; `main` only dispatches. Add a command by
adding a module and one line to `_COMMANDS`. What the commands over the API
share is in `command` (exit codes, common options, the API's failures as exit
codes, output) and `waiting` (`--wait-status`, progress, the outcome); the
client itself is `api_client`.
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

_COMMANDS = (
    "slipway_cli.analysis",
    "slipway_cli.apikey",
    "slipway_cli.app",
    "slipway_cli.chain",
    "slipway_cli.config",
    "slipway_cli.deadletters",
    "slipway_cli.deployment",
    "slipway_cli.events",
    "slipway_cli.demo",
    "slipway_cli.encrypt",
    "slipway_cli.event",
    "slipway_cli.insights",
    "slipway_cli.kubesim",
    "slipway_cli.migrate",
    "slipway_cli.pipectl",
    "slipway_cli.plan_preview",
    "slipway_cli.replay",
    "slipway_cli.up",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slipway", description="GitOps continuous delivery with progressive delivery."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in _COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
