"""What the analysis says in the deployment's stage log: its start, each tick, a warning.

People read these lines under the ANALYSIS stage (`slipway deployment logs`);
they quote the checks as recorded (queries redacted) and the verdicts' numbers.
"""

from __future__ import annotations

from typing import Final

from services.analysis.decider import Due
from shared.analysis.judges import SequentialJudge, judge_named
from shared.analysis.strategies import TickVerdict, finite_values
from shared.events.catalog import AnalysisMeasured, AnalysisStarted

__all__ = ["measurement_text", "start_line", "tick_line", "too_short_to_fail"]

_COMPARISONS: Final = frozenset({"PREVIOUS", "CANARY_BASELINE", "CANARY_PRIMARY"})


def too_short_to_fail(started: AnalysisStarted) -> list[str]:
    """Warnings for comparison checks the sequential judge cannot fail within the duration.

    Its batches are minutes long (so they are nearly independent), and it needs
    three of them: a 2-minute stage's comparisons can only pass. Say so up front
    rather than let a short analysis look like a guarantee.
    """
    judge = judge_named(started.judge)
    if not isinstance(judge, SequentialJudge):
        return []
    warnings = []
    for check in started.checks:
        if check.strategy not in _COMPARISONS:
            continue
        earliest = judge.earliest_failure_s(check.interval_s)
        if earliest > started.duration_s:
            warnings.append(
                f"Warning: {check.key} ({check.strategy}) cannot fail within "
                f"{started.duration_s:g} s with judge sequential: it needs 3 batches, the first "
                f"chance is at {earliest:g} s; use a longer duration or `judge: pipecd`"
            )
    return warnings


def start_line(started: AnalysisStarted, holder: str) -> str:
    checks = ", ".join(
        f"{c.key} ({c.strategy} every {c.interval_s:g} s, failureLimit {c.failure_limit})"
        for c in started.checks
    )
    return (
        f"Analysis {started.analysis_id} started by {holder} for {started.duration_s:g} s "
        f"with judge {started.judge} {started.judge_version}: {checks or 'no checks'}"
    )


def measurement_text(m: AnalysisMeasured) -> str:
    who = f"{m.variant} " if m.variant else ""
    # A multi-line PromQL template reads best in a log line as one line.
    query = "`" + " ".join(m.query.split()) + "`"
    if m.error:
        return f"{who}{query}: error: {m.error}"
    if m.status_code:
        return f"{m.query}: HTTP {m.status_code}"
    values = finite_values(m)
    if not values:
        dropped = f" ({len(m.values)} non-numeric)" if m.values else ""
        return f"{who}{query}: no data{dropped}"
    return f"{who}{query}: {len(values)} sample(s), min {min(values):.6g}, max {max(values):.6g}"


def tick_line(due: Due, measured: list[AnalysisMeasured], verdict: TickVerdict) -> str:
    final = " (final)" if due.final else ""
    sent = "; ".join(measurement_text(m) for m in measured)
    return (
        f"[{due.key}] tick {due.tick} at {due.at_s:g} s{final}: {sent} "
        f"→ {verdict.outcome}: {verdict.reason}"
    )
