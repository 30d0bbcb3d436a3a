"""What the analysis says in the deployment's stage log: its start, each tick, a warning.

People read these lines under the ANALYSIS stage (`slipway deployment logs`);
they quote the checks as recorded (queries redacted) and the verdicts' numbers.
"""

from __future__ import annotations

from typing import Final

from services.analysis.decider import Due
from shared.analysis.judges import SequentialJudge, judge_named
from shared.analysis.ratio_query import COUNT_ROLES, count_queries
from shared.analysis.strategies import TickVerdict, finite_values
from shared.events.catalog import AnalysisMeasured, AnalysisStarted

__all__ = ["measurement_text", "start_line", "tick_line", "too_short_to_fail"]

_COMPARISONS: Final = frozenset({"PREVIOUS", "CANARY_BASELINE", "CANARY_PRIMARY"})
_COUNT_ROLES: Final = frozenset(role for roles in COUNT_ROLES.values() for role in roles)


def too_short_to_fail(started: AnalysisStarted) -> list[str]:
    """Warnings for comparison checks the sequential judge cannot fail within the duration.

    On ratio samples its batches are minutes long (so they are nearly independent),
    and it needs three of them: a 2-minute stage's comparisons can only pass. Say so
    up front rather than let a short analysis look like a guarantee. A ratio of two
    rates is judged on its counts, which can fail at any tick.
    """
    judge = judge_named(started.judge)
    if not isinstance(judge, SequentialJudge):
        return []
    warnings = []
    for check in started.checks:
        if check.strategy not in _COMPARISONS:
            continue
        if count_queries(check.query) is not None:
            continue  # judged on the counts behind the ratio: any tick can fail it
        earliest = judge.earliest_failure_s(check.interval_s)
        if earliest > started.duration_s:
            warnings.append(
                f"Warning: {check.key} ({check.strategy}) cannot fail within "
                f"{started.duration_s:g} s with judge sequential: it needs 3 batches, the first "
                f"chance is at {earliest:g} s; use a longer duration or `judge: pipecd`"
            )
    return warnings


def start_line(started: AnalysisStarted, holder: str) -> str:
    """The stage log line that announces an analysis: its checks and who runs it."""
    checks = ", ".join(
        f"{c.key} ({c.strategy} every {c.interval_s:g} s, failureLimit {c.failure_limit})"
        for c in started.checks
    )
    return (
        f"Analysis {started.analysis_id} started by {holder} for {started.duration_s:g} s "
        f"with judge {started.judge} {started.judge_version}: {checks or 'no checks'}"
    )


def measurement_text(m: AnalysisMeasured) -> str:
    """One measurement for a log line: the variant, the query on one line, value or error."""
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
    """The stage log line of one tick: its measurements and the verdict."""
    final = " (final)" if due.final else ""
    # The counts behind a ratio are in the verdict's reason; only their errors are news here.
    sent = "; ".join(measurement_text(m) for m in measured if m.role not in _COUNT_ROLES or m.error)
    return (
        f"[{due.key}] tick {due.tick} at {due.at_s:g} s{final}: {sent} "
        f"→ {verdict.outcome}: {verdict.reason}"
    )
