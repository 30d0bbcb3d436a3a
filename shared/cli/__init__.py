"""The `slipway` command line (DESIGN §10).

Each sub-command lives in its own module with a `register(subparsers)` that
adds its parser and sets `handler`; `main` only dispatches. Add a command by
adding a module and one line to `_COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from shared.errors import ConfigError, SlipwayError

_COMMANDS = (
    "shared.cli.analysis",
    "shared.cli.apikey",
    "shared.cli.app",
    "shared.cli.config",
    "shared.cli.deployment",
    "shared.cli.events",
    "shared.cli.demo",
    "shared.cli.kubesim",
    "shared.cli.migrate",
    "shared.cli.plan_preview",
    "shared.cli.replay",
    "shared.cli.up",
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
    except ConfigError as exc:
        print(f"slipway: configuration error: {exc}", file=sys.stderr)
        return 2
    except SlipwayError as exc:
        print(f"slipway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
