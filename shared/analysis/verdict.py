"""What every judge speaks: an observation in, a verdict out (`shared.analysis.judges`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from shared.analysis.rate_ratio import Counts
from shared.errors import ConfigError

Deviation = Literal["EITHER", "HIGH", "LOW"]
Outcome = Literal["continue", "pass", "fail"]

DEVIATIONS: Final[tuple[Deviation, ...]] = ("EITHER", "HIGH", "LOW")


@dataclass(frozen=True)
class Observation:
    """One tick of one metric check: the experiment's and the control's samples."""

    at: float  # seconds since the analysis started (for reporting only)
    experiment: tuple[float, ...]  # canary's samples (or this deployment's, for PREVIOUS)
    control: tuple[float, ...]  # baseline's / primary's / the previous deployment's samples
    # The counts behind a ratio query over the tick's window (`shared.analysis.rate_ratio`),
    # when the service measured them.
    counts: Counts | None = None


@dataclass(frozen=True)
class Verdict:
    """A judge's answer after a tick, with the numbers behind it."""

    outcome: Outcome
    reason: str  # a sentence for the stage log
    statistics: dict[str, float]


class Judge(Protocol):
    """Decides pass / fail / continue from all observations of one metric so far."""

    @property
    def name(self) -> str:
        """The judge's name in configs and verdicts (`pipecd`, `sequential`)."""

    @property
    def version(self) -> str:
        """Bumped whenever the judge's maths changes; recorded in every verdict."""

    def judge(
        self,
        observations: Sequence[Observation],
        *,
        deviation: Deviation,
        failure_limit: int,
        final: bool,
    ) -> Verdict:
        """The verdict after `observations` (every tick so far); never `continue` when `final`."""


def check_deviation(deviation: str) -> None:
    """Refuse a deviation that is not one of `DEVIATIONS` (a `ConfigError`)."""
    if deviation not in DEVIATIONS:
        raise ConfigError(
            f"unknown deviation {deviation!r}: expected one of {', '.join(DEVIATIONS)}"
        )


def finite(values: tuple[float, ...]) -> tuple[float, ...]:
    """The values that are numbers: Prometheus' NaN (e.g. a ratio over zero requests) dropped."""
    return tuple(v for v in values if not math.isnan(v))


def fmt(x: float) -> str:
    """A statistic as the stage log prints it: three significant digits."""
    return f"{x:.3g}"
