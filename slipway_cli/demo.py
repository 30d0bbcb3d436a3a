"""`slipway demo`: start the sandbox and play the seed's story (DESIGN §1, §12).

`slipway demo --once` plays it headless and exits 0 only if every step
behaved as expected (1 if one did not, 2 if the sandbox could not start);
without `--once` the sandbox stays up afterwards for exploring with the CLI
until Ctrl-C. `slipway up` (what `make demo` runs) is the same supervisor
(`slipway_cli.supervisor`, loaded only when the command runs).
"""

from __future__ import annotations

import argparse
import asyncio

from slipway_cli.sandboxed import add_sandbox_options, supervisor


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway demo` (the sandbox playing the seed's story) to the parser."""
    parser = subparsers.add_parser(
        "demo",
        help="start the sandbox and play the seed's story (dev deploy, canary, rollback, revert)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="play the story headless, stop; exit 0 only if every step went as expected",
    )
    add_sandbox_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start the sandbox, play the story, and stay up unless `--once`."""
    sandbox = supervisor()
    code: int = asyncio.run(
        sandbox.supervise(
            sandbox.options_from(args), play=True, stay_up=not args.once, report_path=args.report
        )
    )
    return code
