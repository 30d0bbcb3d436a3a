"""What every benchmark prints besides its figures: quiet logs, and the grouped details."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def quiet_logging() -> None:
    """Warnings and worse, to stderr: stdout carries only the report."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def print_groups(report: dict[str, Any]) -> None:
    """The report's duration, details and machine sections, one `group.key value` a line."""
    for group in ("duration_s", "details", "machine"):
        for key, value in report[group].items():
            print(f"{group}.{key:<30} {value}")
