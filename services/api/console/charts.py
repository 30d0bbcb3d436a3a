"""An analysis as chart data: each check's samples over time, its thresholds and its verdicts.

Pure: folds the events of one `analysis-<id>` stream (`AnalysisStarted`,
`AnalysisMeasured`, `AnalysisTickJudged`, `AnalysisConcluded`) into what the
deployment page draws, so a person sees *why* it passed or failed: one line
per variant measured (canary against baseline or primary, or the metric alone
against its bounds), the bounds, and per tick the verdict with the judge's
statistics. Values are the provider's text; what does not parse as a finite
number is left out of the line (a gap), never invented.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.events.base import RecordedEvent
from shared.events.catalog import (
    AnalysisConcluded,
    AnalysisMeasured,
    AnalysisStarted,
    AnalysisTickJudged,
)

__all__ = ["AnalysisChart", "CheckChart", "Series", "TickVerdict", "analysis_chart"]


@dataclass
class Series:
    """One line of a check's chart: a variant's samples over time."""

    label: str
    """`canary`, `baseline`, `primary`, `previous`, or the check's own name."""
    points: list[tuple[float, float]] = field(default_factory=list)
    """(unix seconds, value)."""


@dataclass(frozen=True)
class TickVerdict:
    """One tick's verdict row under the chart: outcome, why, the judge's statistics."""

    tick: int
    at_s: float
    outcome: str
    reason: str
    statistics: tuple[tuple[str, str], ...]


@dataclass
class CheckChart:
    """One check's chart: its strategy, thresholds, series and tick verdicts."""

    key: str
    strategy: str
    expected_min: float | None = None
    expected_max: float | None = None
    series: dict[str, Series] = field(default_factory=dict)
    verdicts: list[TickVerdict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class AnalysisChart:
    """An analysis as the console draws it: the judge, the verdict, each check's chart."""

    analysis_id: str
    judge: str = ""
    verdict: str = ""
    reason: str = ""
    checks: dict[str, CheckChart] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """What the page's script draws (each check's part on its canvas, `data-chart`)."""
        return {
            "analysis_id": self.analysis_id,
            "checks": [
                {
                    "key": c.key,
                    "strategy": c.strategy,
                    "expected_min": c.expected_min,
                    "expected_max": c.expected_max,
                    "series": [
                        {"label": s.label, "points": sorted(s.points)} for s in c.series.values()
                    ],
                    "verdicts": [
                        {"tick": v.tick, "at_s": v.at_s, "outcome": v.outcome} for v in c.verdicts
                    ],
                }
                for c in self.checks.values()
            ],
        }


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _label(measured: AnalysisMeasured) -> str:
    """The line a measurement belongs to: its variant, and for a ratio of rates which of the
    two counters (`canary events`, `canary total`), never both on one line."""
    role = str(measured.role)
    counter = role.rpartition("_")[2] if role.endswith(("_events", "_total")) else ""
    name = measured.variant or role or measured.check
    return f"{name} {counter}" if counter else name


def analysis_chart(analysis_id: str, history: Iterable[RecordedEvent]) -> AnalysisChart:
    """Fold an analysis stream's events into its charts (pure)."""
    chart = AnalysisChart(analysis_id=analysis_id)

    def check(key: str, strategy: str = "") -> CheckChart:
        if key not in chart.checks:
            chart.checks[key] = CheckChart(key=key, strategy=strategy)
        return chart.checks[key]

    for recorded in history:
        match recorded.event:
            case AnalysisStarted() as started:
                chart.judge = started.judge
                for c in started.checks:
                    found = check(c.key, c.strategy)
                    found.strategy = c.strategy
                    found.expected_min, found.expected_max = c.expected_min, c.expected_max
            case AnalysisMeasured() as measured:
                found = check(measured.check)
                if measured.error:
                    found.errors.append(f"tick {measured.tick}: {measured.error}")
                    continue
                label = _label(measured)
                series = found.series.setdefault(label, Series(label=label))
                known = {t for t, _ in series.points}
                for at, text in zip(measured.timestamps, measured.values, strict=False):
                    value = _number(text)
                    if value is not None and at not in known:
                        series.points.append((at, value))
                        known.add(at)
            case AnalysisTickJudged() as judged:
                check(judged.check, judged.strategy).verdicts.append(
                    TickVerdict(
                        tick=judged.tick,
                        at_s=judged.at_s,
                        outcome=judged.outcome,
                        reason=judged.reason,
                        statistics=judged.statistics,
                    )
                )
            case AnalysisConcluded() as concluded:
                chart.verdict = str(concluded.verdict)
                chart.reason = concluded.reason
            case _:
                pass
    return chart
