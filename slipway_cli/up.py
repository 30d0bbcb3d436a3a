"""`slipway up`: the local sandbox on embedded servers (what `make demo` runs).

It starts everything (`slipway_sandbox.sandbox`), plays the seed's story (as
`slipway demo` does), then stays up for exploring with the CLI until Ctrl-C.
`--once` only checks that everything starts and is ready, then stops.
"""

from __future__ import annotations

import argparse
import asyncio

from slipway_cli.sandboxed import add_sandbox_options, supervisor


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway up` (run the sandbox, play the story, stay up) to the parser."""
    parser = subparsers.add_parser(
        "up", help="run the local sandbox, play the seed's story, stay up until Ctrl-C"
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="start, check every service is ready, stop (no story); exit 0 only if all were",
    )
    parser.add_argument(
        "--no-story", action="store_true", help="start and stay up without playing the story"
    )
    add_sandbox_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start the sandbox; with `--once`, a readiness check that requires nothing."""
    sandbox = supervisor()
    options = sandbox.options_from(args)
    if args.once:
        # A readiness check of whatever this checkout has: nothing is required.
        options.require_all = False
    code: int = asyncio.run(
        sandbox.supervise(
            options,
            play=not (args.once or args.no_story),
            stay_up=not args.once,
            report_path=args.report,
        )
    )
    return code
