"""What every benchmark says besides its measurements: progress, quiet logs, the report."""

from __future__ import annotations

import json
import logging
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

import structlog


def progress(message: str) -> None:
    """A progress line on stderr: stdout carries only the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def quiet_logging() -> None:
    """Warnings and worse, to stderr: stdout carries only the report."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def percentile(samples: Sequence[float], pct: int) -> float:
    """The `pct`th percentile (inclusive method); the one sample of one, NaN of none."""
    if len(samples) < 2:
        return samples[0] if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[pct - 1]


def print_report(
    report: dict[str, Any],
    *,
    as_json: bool,
    table: Callable[[dict[str, Any]], None] | None = None,
    key_width: int = 28,
) -> None:
    """`report` as one JSON object, or as `table` prints it (by default a `key value` a line)."""
    if as_json:
        print(json.dumps(report, indent=2))
    elif table is not None:
        table(report)
    else:
        for key, value in report.items():
            print(f"{key:<{key_width}} {value}")


def print_groups(report: dict[str, Any]) -> None:
    """The report's duration, details and machine sections, one `group.key value` a line."""
    for group in ("duration_s", "details", "machine"):
        for key, value in report[group].items():
            print(f"{group}.{key:<30} {value}")
