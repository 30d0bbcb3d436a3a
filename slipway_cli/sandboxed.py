"""What the sandbox's commands (`slipway demo`, `slipway up`) share before the sandbox loads.

The sandbox is a separate distribution (tools/sandbox, package `slipway_sandbox`) that
the service image does not carry, so these commands register their options without it
and import it only when they run: `supervisor()` loads it, or says how to install it.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType
from typing import Final

from shared.errors import SlipwayError

_SANDBOX: Final = "slipway_sandbox"


class SandboxMissing(SlipwayError):
    """The sandbox distribution is not installed (an image or `pip install .` without it)."""

    def __init__(self) -> None:
        super().__init__(
            "this command needs the local sandbox (package slipway_sandbox), a development "
            "tool that `pip install .` and the service image leave out; from a checkout, "
            "run `make` or `pip install -e tools/sandbox`"
        )


def supervisor() -> ModuleType:
    """`slipway_cli.supervisor`, imported now; `SandboxMissing` without the sandbox."""
    try:
        return importlib.import_module("slipway_cli.supervisor")
    except ModuleNotFoundError as exc:
        # Only the sandbox's own absence is ours to explain; anything else is a real bug.
        if exc.name is None or exc.name.split(".")[0] != _SANDBOX:
            raise
        raise SandboxMissing from exc


def add_sandbox_options(parser: argparse.ArgumentParser) -> None:
    """The options `slipway demo` and `slipway up` share (the supervisor reads them)."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".sandbox"),
        help="where the servers keep their data and services their logs (reset at each start)",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="play what this checkout can (skip steps whose services or Prometheus are missing)",
    )
    parser.add_argument(
        "--replicas",
        type=_replicas,
        default={},
        metavar="NAME=N[,NAME=N…]",
        help="run several replicas of a service, e.g. planner=2,executor=2",
    )
    parser.add_argument(
        "--analysis-seconds",
        type=int,
        default=None,
        help="the prd ANALYSIS stage's duration (default: the demo repository's)",
    )
    parser.add_argument("--ready-timeout", type=float, default=90.0)
    parser.add_argument(
        "--event-watcher",
        action="store_true",
        help="also play the image-event step: CI registers an image, the event watcher "
        "writes it back to git, dev deploys it, dev's chain deploys stg (off by default)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="also write the story's per-step timings and verdicts to this JSON file",
    )


def _replicas(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"expected NAME=N with N ≥ 1, not {item!r}")
        counts[name] = int(value)
    return counts
