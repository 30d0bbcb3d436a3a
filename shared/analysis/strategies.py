"""The verdict on one check after a tick, from its recorded measurements: pure and exact.

Used live by the analysis service and again by `slipway analysis rejudge`, on
the same recorded `AnalysisMeasured` events, so a verdict recomputed with the
same judge is the same to the last bit.

- THRESHOLD (the service's own, `threshold` v1): a tick fails when the query
  failed, when it found no data (unless `skipOnNoData`), or when any sample is
  outside `expected`; the check fails when more ticks failed than
  `failureLimit`, passes at its final tick otherwise.
- HTTP (`http` v1): a tick fails when the request failed or timed out, or the
  code is not `expectedCode` (200 when unset), or the body lacks
  `expectedResponse`; counted like THRESHOLD.
- PREVIOUS, CANARY_BASELINE, CANARY_PRIMARY: each tick with data on both
  sides is an `Observation` (experiment = this deployment's / the canary's
  samples, control = the previous deployment's / baseline's / primary's); the
  judge decides from all of them so far. A tick whose query failed, or that
  found no data without `skipOnNoData`, counts as a failed tick as for
  THRESHOLD (more than `failureLimit` fail the check); with `skipOnNoData` it
  is left out. PREVIOUS with no earlier successful analysis to compare with
  (the application's first) passes at its first tick whose query worked, saying so,
  as PipeCD's does; its failed queries still count against `failureLimit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from shared.analysis.judges import Deviation, Judge, Observation
from shared.analysis.rate_ratio import Counts
from shared.analysis.ratio_query import COUNT_ROLES
from shared.events.catalog import AnalysisCheck, AnalysisMeasured

__all__ = [
    "COMPARISONS",
    "HTTP_JUDGE",
    "THRESHOLD_JUDGE",
    "TickInput",
    "TickVerdict",
    "evaluate",
    "finite_values",
]

Outcome = Literal["continue", "pass", "fail"]
THRESHOLD_JUDGE: Final = ("threshold", "1")
HTTP_JUDGE: Final = ("http", "1")
COMPARISONS: Final = frozenset({"PREVIOUS", "CANARY_BASELINE", "CANARY_PRIMARY"})


@dataclass(frozen=True)
class TickInput:
    """One tick of one check as recorded: its measurement(s) by role."""

    tick: int
    at_s: float
    final: bool
    single: AnalysisMeasured | None = None  # THRESHOLD, HTTP
    experiment: AnalysisMeasured | None = None  # comparisons
    control: AnalysisMeasured | None = None
    # A ratio comparison's counts (`shared.analysis.ratio_query.COUNT_ROLES`), by role.
    counts: Mapping[str, AnalysisMeasured] = field(default_factory=dict)


_TickRule = Callable[[AnalysisCheck, TickInput], "str | None"]
"""Why a THRESHOLD / HTTP tick failed, or None when it passed."""


@dataclass(frozen=True)
class TickVerdict:
    """A judge's verdict on one tick, with the judge (name, version) that gave it."""

    outcome: Outcome
    reason: str
    judge: str
    judge_version: str
    failures: int
    statistics: tuple[tuple[str, str], ...] = ()


def finite_values(measured: AnalysisMeasured | None) -> tuple[float, ...]:
    """The samples as numbers; `NaN` and infinities (0/0 in a rate ratio with no traffic,
    say) are not data."""
    if measured is None:
        return ()
    out: list[float] = []
    for text in measured.values:
        try:
            value = float(text)
        except ValueError:
            continue
        if math.isfinite(value):
            out.append(value)
    return tuple(out)


def evaluate(
    check: AnalysisCheck,
    ticks: Sequence[TickInput],
    judge: Judge,
    *,
    has_previous: bool = True,
) -> TickVerdict:
    """The verdict on `check` after the last of `ticks` (all its ticks so far, in order)."""
    if check.strategy == "HTTP":
        return _counted(check, ticks, _http_tick, HTTP_JUDGE)
    if check.strategy == "THRESHOLD":
        return _counted(check, ticks, _threshold_tick, THRESHOLD_JUDGE)
    return _comparison(check, ticks, judge, has_previous=has_previous)


# THRESHOLD and HTTP: count failed ticks -------------------------------------------------


def _threshold_tick(check: AnalysisCheck, tick: TickInput) -> str | None:
    """Why the tick failed, or None when it passed."""
    measured = tick.single
    if measured is None:
        return "not measured"
    if measured.error:
        return f"query failed: {measured.error}"
    values = finite_values(measured)
    if not values:
        return None if check.skip_on_no_data else "no data"
    outside = [v for v in values if not _in_range(check, v)]
    if outside:
        high = check.expected_max is not None and max(outside) > check.expected_max
        worst = max(outside) if high else min(outside)
        return f"{worst:.6g} outside {_range_text(check)} ({len(outside)} of {len(values)} samples)"
    return None


def _http_tick(check: AnalysisCheck, tick: TickInput) -> str | None:
    measured = tick.single
    if measured is None:
        return "not measured"
    if measured.error:
        return measured.error
    if measured.status_code != check.expected_code:
        return f"HTTP {measured.status_code}, expected {check.expected_code}"
    body = measured.values[0] if measured.values else ""
    if check.expected_response and check.expected_response not in body:
        return f"the response lacks {check.expected_response!r}"
    return None


def _counted(
    check: AnalysisCheck,
    ticks: Sequence[TickInput],
    failed_why: _TickRule,
    judge: tuple[str, str],
) -> TickVerdict:
    failures = [(t, why) for t in ticks if (why := failed_why(check, t)) is not None]
    last = ticks[-1]
    name, version = judge
    head = f"{check.key} ({check.strategy})"
    if len(failures) > check.failure_limit:
        tick, why = failures[-1]
        return TickVerdict(
            "fail",
            f"{head}: {len(failures)} failed tick(s) > failureLimit {check.failure_limit}; "
            f"tick {tick.tick} at {tick.at_s:g} s: {why}",
            name,
            version,
            len(failures),
        )
    note = _last_note(check, last, failed_why)
    if last.final:
        return TickVerdict(
            "pass",
            f"{head}: {len(ticks) - len(failures)} of {len(ticks)} tick(s) passed "
            f"(failureLimit {check.failure_limit}){note}",
            name,
            version,
            len(failures),
        )
    return TickVerdict(
        "continue",
        f"{head}: {len(failures)} failed tick(s) so far (failureLimit {check.failure_limit}){note}",
        name,
        version,
        len(failures),
    )


def _last_note(check: AnalysisCheck, tick: TickInput, failed_why: _TickRule) -> str:
    why = failed_why(check, tick)
    if why is not None:
        return f"; tick {tick.tick} failed: {why}"
    if tick.single is not None and check.strategy == "THRESHOLD":
        values = finite_values(tick.single)
        if not values:
            return f"; tick {tick.tick}: no data (skipOnNoData)"
        return (
            f"; tick {tick.tick}: {len(values)} sample(s) within {_range_text(check)}, "
            f"max {max(values):.6g}"
        )
    if tick.single is not None:
        return f"; tick {tick.tick}: HTTP {tick.single.status_code}"
    return ""


def _in_range(check: AnalysisCheck, value: float) -> bool:
    if check.expected_min is not None and value < check.expected_min:
        return False
    return not (check.expected_max is not None and value > check.expected_max)


def _range_text(check: AnalysisCheck) -> str:
    low, high = check.expected_min, check.expected_max
    if low is not None and high is not None:
        return f"[{low:g}, {high:g}]"
    if high is not None:
        return f"≤ {high:g}"
    if low is not None:
        return f"≥ {low:g}"
    return "any value"


# Comparisons: the judge ------------------------------------------------------------------


def _comparison(
    check: AnalysisCheck, ticks: Sequence[TickInput], judge: Judge, *, has_previous: bool
) -> TickVerdict:
    head = f"{check.key} ({check.strategy}, judge {judge.name} {judge.version})"
    last = ticks[-1]
    if check.strategy == "PREVIOUS" and not has_previous:
        return _first_previous(check, ticks, judge, head)
    failures: list[tuple[TickInput, str]] = []
    observations: list[Observation] = []
    for tick in ticks:
        why, observation = _comparison_tick(check, tick)
        if why is not None:
            failures.append((tick, why))
        elif observation is not None:
            observations.append(observation)
    if len(failures) > check.failure_limit:
        tick, why = failures[-1]
        return TickVerdict(
            "fail",
            f"{head}: {len(failures)} tick(s) without a usable measurement > failureLimit "
            f"{check.failure_limit}; tick {tick.tick} at {tick.at_s:g} s: {why}",
            judge.name,
            judge.version,
            len(failures),
        )
    if not observations:
        outcome: Outcome = "pass" if last.final else "continue"
        return TickVerdict(
            outcome,
            f"{head}: no tick with data on both sides yet"
            + (" (skipOnNoData)" if check.skip_on_no_data else ""),
            judge.name,
            judge.version,
            len(failures),
        )
    verdict = judge.judge(
        observations,
        deviation=_deviation(check.deviation),
        failure_limit=check.failure_limit,
        final=last.final,
    )
    outcome = verdict.outcome
    if last.final and outcome == "continue":
        # The interface says a judge decides at the final tick; if one does not, no
        # evidence of a regression was found.
        outcome = "pass"
    statistics = tuple((k, repr(float(v))) for k, v in sorted(verdict.statistics.items()))
    return TickVerdict(
        outcome,
        f"{head}: {verdict.reason} ({len(observations)} tick(s) compared)",
        judge.name,
        judge.version,
        len(failures),
        statistics,
    )


def _first_previous(
    check: AnalysisCheck, ticks: Sequence[TickInput], judge: Judge, head: str
) -> TickVerdict:
    """PREVIOUS for an application with no earlier successful analysis, as PipeCD does it:
    each tick still queries this deployment's side; a failed query (or no data, without
    `skipOnNoData`) is a failed tick against `failureLimit`, and the first tick whose query
    worked passes the check — there is nothing to compare it with."""
    failures: list[tuple[TickInput, str]] = []
    for tick in ticks:
        measured = tick.experiment
        if measured is None:
            why: str | None = "experiment not measured"
        elif measured.error:
            why = f"{measured.variant or 'experiment'} query failed: {measured.error}"
        elif not finite_values(measured):
            why = None if check.skip_on_no_data else f"no data for {measured.variant}"
            if why is None:
                continue  # PipeCD: skipOnNoData skips the tick, undecided
        else:
            why = None
        if why is not None:
            failures.append((tick, why))
            if len(failures) > check.failure_limit:
                return TickVerdict(
                    "fail",
                    f"{head}: {len(failures)} tick(s) without a usable measurement > "
                    f"failureLimit {check.failure_limit}; tick {tick.tick} at {tick.at_s:g} s: "
                    f"{why}",
                    judge.name,
                    judge.version,
                    len(failures),
                )
            continue
        return TickVerdict(
            "pass",
            f"{head}: no earlier successful analysis of this application to compare with "
            f"(first deployment: passed at tick {tick.tick})",
            judge.name,
            judge.version,
            len(failures),
        )
    last = ticks[-1]
    return TickVerdict(
        "pass" if last.final else "continue",
        f"{head}: no earlier successful analysis of this application to compare with"
        + ("" if last.final else "; no usable measurement yet"),
        judge.name,
        judge.version,
        len(failures),
    )


def _comparison_tick(
    check: AnalysisCheck, tick: TickInput
) -> tuple[str | None, Observation | None]:
    sides = (("experiment", tick.experiment), ("control", tick.control))
    for role, measured in sides:
        if measured is None:
            return f"{role} not measured", None
        if measured.error:
            return f"{measured.variant or role} query failed: {measured.error}", None
    experiment, control = finite_values(tick.experiment), finite_values(tick.control)
    if not experiment or not control:
        empty = tick.experiment if not experiment else tick.control
        assert empty is not None
        if check.skip_on_no_data:
            return None, None
        return f"no data for {empty.variant or empty.role}", None
    return None, Observation(
        at=tick.at_s, experiment=experiment, control=control, counts=_counts(tick)
    )


def _counts(tick: TickInput) -> Counts | None:
    """The tick's counts when the service measured them (None: it did not, the query is
    not a ratio of rates): each counter's growth between the measurement's two instants
    (`window_start`, `window_end`), summed over the answer's series — a series without
    a point at the start counts from zero. Events with no series at all are 0 (a counter
    never incremented may not exist); a total with no point at the end, or any error,
    makes every count NaN: asked for but unusable, the tick carries no evidence
    (`rate_ratio.usable`, which also refuses a negative growth: a counter reset)."""
    if not tick.counts:
        return None
    values: list[float] = []
    for side in ("experiment", "control"):
        for role in COUNT_ROLES[side]:
            growth = _growth(tick.counts.get(role), total=role.endswith("total"))
            if growth is None:
                return Counts(math.nan, math.nan, math.nan, math.nan)
            values.append(growth)
    return Counts(*values)


_SAME_INSTANT_S: Final = 0.0005  # the instants are sent to Prometheus in milliseconds


def _growth(measured: AnalysisMeasured | None, *, total: bool) -> float | None:
    """Σ(value at the end) − Σ(value at the start) over the series, or None if unusable."""
    if measured is None or measured.error or len(measured.timestamps) != len(measured.values):
        return None
    at_start: list[float] = []
    at_end: list[float] = []
    for at, text in zip(measured.timestamps, measured.values, strict=True):
        try:
            value = float(text)
        except ValueError:
            return None
        if not math.isfinite(value):
            return None
        if abs(at - measured.window_end) <= _SAME_INSTANT_S:
            at_end.append(value)
        elif abs(at - measured.window_start) <= _SAME_INSTANT_S:
            at_start.append(value)
        else:
            return None  # not the two instants asked for
    if total and not at_end:
        return None
    return math.fsum(at_end) - math.fsum(at_start)


def _deviation(value: str) -> Deviation:
    if value == "HIGH":
        return "HIGH"
    if value == "LOW":
        return "LOW"
    return "EITHER"
