"""Judges: the pure verdict on one comparison metric from all its observations so far.

The analysis service calls `judge(...)` after every tick of a `CANARY_BASELINE`,
`CANARY_PRIMARY` or `PREVIOUS` metric with every observation so far, and with
`final=True` on the tick at (or after) the stage's duration; `continue` means "no
decision yet" and is never the answer when `final` is set. Judges are pure and
deterministic (standard library only, floating-point work in a fixed order), so
`slipway analysis rejudge` recomputes a verdict bit for bit from the recorded samples.
Bump a judge's `version` whenever its maths changes: it is recorded in every verdict.

Values that are not numbers (Prometheus' NaN, e.g. a ratio over zero requests) are
dropped from an observation first; an observation left with an empty side is no
evidence either way (the service applies `skipOnNoData` before calling the judge).


Two judges (one module each): `pipecd` (`shared.analysis.pipecd_judge`), what PipeCD does
— a Mann-Whitney U test per tick, failed ticks counted against `failureLimit`; and
`sequential` (`shared.analysis.sequential_judge`, the default), anytime-valid tests whose
false-fail probability is bounded over every look. What both take and give is in
`shared.analysis.verdict`; this module is the registry by name.

Every prefix is re-checked on every call, so the verdict and the tick it names
(`statistics["failed_at_tick"]`) do not depend on how often the judge was called.
"""

from __future__ import annotations

from typing import Final

from shared.analysis.pipecd_judge import PipeCDJudge
from shared.analysis.sequential_judge import SequentialJudge, relative_difference
from shared.analysis.verdict import DEVIATIONS, Deviation, Judge, Observation, Outcome, Verdict
from shared.errors import ConfigError

__all__ = [
    "DEFAULT_JUDGE",
    "DEVIATIONS",
    "JUDGE_NAMES",
    "Deviation",
    "Judge",
    "Observation",
    "Outcome",
    "PipeCDJudge",
    "SequentialJudge",
    "UnknownJudgeError",
    "Verdict",
    "judge_named",
    "relative_difference",
]

JUDGE_NAMES: Final[tuple[str, ...]] = ("pipecd", "sequential")
DEFAULT_JUDGE: Final = "sequential"


class UnknownJudgeError(ConfigError, KeyError):
    """A judge name that is not in `JUDGE_NAMES` (a `ConfigError`, and a `KeyError` for lookups)."""

    def __str__(self) -> str:
        # KeyError's own __str__ would print the message in quotes.
        return str(self.args[0]) if self.args else ""


def judge_named(name: str) -> Judge:
    """The judge called `name`; `UnknownJudgeError` naming the known ones otherwise."""
    if name == "pipecd":
        return PipeCDJudge()
    if name == "sequential":
        return SequentialJudge()
    raise UnknownJudgeError(f"unknown judge {name!r}: expected one of {', '.join(JUDGE_NAMES)}")
