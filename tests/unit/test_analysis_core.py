"""The analysis service's pure parts: query variables, tick verdicts, the schedule, rejudging."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.analysis.decider import conclusion, due_ticks, next_due_s
from services.analysis.runner import too_short_to_fail
from shared.analysis.checks import resolve_checks
from shared.analysis.judges import judge_named
from shared.analysis.record import fold, judge_tick, rejudge, tick_at, tick_count
from shared.analysis.strategies import TickInput, evaluate
from shared.analysis.templating import QueryArgs, TemplateError, render
from shared.config import load_analysis_templates
from shared.config.analysis import AnalysisTemplateSpec
from shared.config.application import AnalysisOptions
from shared.errors import ConfigError
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    AnalysisCheck,
    AnalysisMeasured,
    AnalysisRequested,
    AnalysisStarted,
    AnalysisTickJudged,
)
from shared.executor.options import stage_options

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
THRESHOLD = AnalysisCheck(
    key="metrics[0] error-rate",
    kind=vocabulary.CheckKind.METRICS,
    strategy=vocabulary.CheckStrategy.THRESHOLD,
    interval_s=3.0,
    provider="prom",
    query="q",
    expected_max=0.1,
)
HTTP = AnalysisCheck(
    key="https[0]",
    kind=vocabulary.CheckKind.HTTP,
    strategy=vocabulary.CheckStrategy.HTTP,
    interval_s=5.0,
    expected_code=200,
)
COMPARE = AnalysisCheck(
    key="metrics[1]",
    kind=vocabulary.CheckKind.METRICS,
    strategy=vocabulary.CheckStrategy.CANARY_PRIMARY,
    interval_s=3.0,
    provider="prom",
    query="q",
    deviation=vocabulary.Deviation.HIGH,
)


def measured(
    check: AnalysisCheck, tick: int, *values: str, role: str = "", **kw: Any
) -> AnalysisMeasured:
    return AnalysisMeasured(
        analysis_id="a1",
        check=check.key,
        tick=tick,
        role=vocabulary.SampleRole(role),
        values=values,
        **kw,
    )


def tick(n: int, *values: str, final: bool = False, **kw: Any) -> TickInput:
    return TickInput(n, 3.0 * n, final, single=measured(THRESHOLD, n, *values, **kw))


# Query variables -------------------------------------------------------------------------

ARGS = QueryArgs(
    app_name="web-prd",
    namespace="shop",
    variant="canary",
    app_args={"job": "web"},
    variant_args={"pod": "web-canary-.*"},
)


def test_render_fills_every_pipecd_query_variable() -> None:
    """`.App.Name`, `.K8s.Namespace`, `.Variant.Name`, `.AppCustomArgs.*` and
    `.VariantCustomArgs.*` are substituted, with or without spaces and trim markers."""
    text = (
        '{app="{{ .App.Name }}",ns="{{.K8s.Namespace}}",v="{{- .Variant.Name -}}",'
        'job="{{ .AppCustomArgs.job }}",pod=~"{{ .VariantCustomArgs.pod }}"}'
    )
    assert render(text, ARGS) == (
        '{app="web-prd",ns="shop",v="canary",job="web",pod=~"web-canary-.*"}'
    )


@pytest.mark.parametrize("action", [".AppCustomArgs.nope", ".App.Id", "index .AppCustomArgs 1"])
def test_render_refuses_what_it_does_not_know_naming_it(action: str) -> None:
    """An unknown variable is an error naming it and the known ones, never an empty string."""
    with pytest.raises(TemplateError) as error:
        render(f"x{{{{ {action} }}}}", ARGS, what="metrics[0]")
    assert f"unknown variable {{{{ {action} }}}}" in str(error.value)
    assert str(error.value).startswith("metrics[0]:")
    assert ".AppCustomArgs.job" in str(error.value)


# Resolving checks ------------------------------------------------------------------------


def _options(with_: str) -> AnalysisOptions:
    options = stage_options("ANALYSIS", with_)
    assert isinstance(options, AnalysisOptions)
    return options


def test_checks_come_from_templates_with_app_args_and_defaults(tmp_path: Path) -> None:
    """A template reference takes the `.pipe/` template (app args kept for rendering); HTTP
    defaults are GET and 200; log checks are listed as not run, with why."""
    (tmp_path / ".pipe").mkdir()
    (tmp_path / ".pipe" / "analysis.yaml").write_text(
        "apiVersion: pipecd.dev/v1beta1\nkind: AnalysisTemplate\nspec:\n  metrics:\n"
        "    err: {provider: prom, query: q, interval: 1m}\n"
    )
    templates = load_analysis_templates(tmp_path)
    options = _options(
        '{"duration": "5m", "metrics": [{"template": {"name": "err", "appArgs": {"a": "b"}}}],'
        ' "https": [{"url": "http://x/", "interval": "30s"}], "logs": [{"query": "x"}]}'
    )
    plans, skipped = resolve_checks(options, templates)
    assert [p.check.key for p in plans] == ["metrics[0] err", "https[0]"]
    assert plans[0].app_args == {"a": "b"} and plans[0].check.interval_s == 60.0
    assert (plans[1].check.method, plans[1].check.expected_code) == ("GET", 200)
    assert skipped == ["logs[0]: log analysis is not supported (PipeCD runs none either)"]
    assert options.judge == "sequential"


def test_an_unknown_template_is_an_error_naming_the_field() -> None:
    """`template.name` that no `.pipe/` file defines: an error naming the field and the known."""
    options = _options('{"duration": "5m", "metrics": [{"template": {"name": "nope"}}]}')
    with pytest.raises(ConfigError, match=r"with\.metrics\[0\]\.template\.name: .*'nope'"):
        resolve_checks(options, AnalysisTemplateSpec())


# Tick verdicts ---------------------------------------------------------------------------


def test_threshold_fails_past_the_failure_limit_with_the_numbers() -> None:
    """THRESHOLD: a value outside `expected` fails a tick; more than failureLimit fail it."""
    judge = judge_named("pipecd")
    check = msgspec.structs.replace(THRESHOLD, failure_limit=1)
    ticks = [tick(1, "0.01"), tick(2, "0.5", "0.02")]
    assert evaluate(check, ticks, judge).outcome == "continue"
    verdict = evaluate(check, [*ticks, tick(3, "0.3")], judge)
    assert verdict.outcome == "fail"
    assert verdict.reason == (
        "metrics[0] error-rate (THRESHOLD): 2 failed tick(s) > failureLimit 1; "
        "tick 3 at 9 s: 0.3 outside ≤ 0.1 (1 of 1 samples)"
    )
    assert (verdict.judge, verdict.failures) == ("threshold", 2)


def test_threshold_no_data_and_errors_are_handled_as_configured() -> None:
    """No data (NaN only) fails a tick unless skipOnNoData; a provider error always does."""
    judge = judge_named("sequential")
    no_data = [tick(1, "NaN", final=True)]
    assert "no data" in evaluate(THRESHOLD, no_data, judge).reason
    assert evaluate(THRESHOLD, no_data, judge).outcome == "fail"
    skipping = msgspec.structs.replace(THRESHOLD, skip_on_no_data=True)
    assert evaluate(skipping, no_data, judge).outcome == "pass"
    errored = [tick(1, final=True, error="Prometheus prom timed out after 30 s")]
    verdict = evaluate(skipping, errored, judge)
    assert verdict.outcome == "fail"
    assert "query failed: Prometheus prom timed out after 30 s" in verdict.reason


def test_http_checks_code_and_body() -> None:
    """HTTP: the expected code (200 by default) and, if set, a piece of the body."""
    judge = judge_named("pipecd")
    ok = TickInput(1, 5.0, True, single=measured(HTTP, 1, "all good", status_code=200))
    assert evaluate(HTTP, [ok], judge).outcome == "pass"
    wanted = msgspec.structs.replace(HTTP, expected_response="ready")
    verdict = evaluate(wanted, [ok], judge)
    assert verdict.outcome == "fail" and "lacks 'ready'" in verdict.reason
    down = TickInput(1, 5.0, True, single=measured(HTTP, 1, status_code=503))
    assert "HTTP 503, expected 200" in evaluate(HTTP, [down], judge).reason


def _compared(
    n: int, experiment: tuple[str, ...], control: tuple[str, ...], final: bool
) -> TickInput:
    return TickInput(
        n,
        3.0 * n,
        final,
        experiment=measured(COMPARE, n, *experiment, role="experiment", variant="canary"),
        control=measured(COMPARE, n, *control, role="control", variant="primary"),
    )


def test_comparisons_go_through_the_judge_and_record_its_numbers() -> None:
    """CANARY_PRIMARY: each tick with data on both sides is an observation for the judge,
    whose name, version and statistics come back with the verdict."""
    judge = judge_named("pipecd")
    worse = ("0.9", "0.8", "0.95", "0.85", "0.9", "0.99")
    same = ("0.1", "0.12", "0.11", "0.09", "0.1", "0.13")
    verdict = evaluate(COMPARE, [_compared(1, worse, same, final=False)], judge)
    assert verdict.outcome == "fail", verdict.reason
    assert verdict.reason.startswith(f"metrics[1] (CANARY_PRIMARY, judge pipecd {judge.version}):")
    assert verdict.statistics and all(float(v) == float(v) for _, v in verdict.statistics)


def test_previous_without_an_earlier_analysis_passes_saying_so() -> None:
    """PREVIOUS with no earlier successful analysis of the app has nothing to compare."""
    check = msgspec.structs.replace(COMPARE, strategy="PREVIOUS")
    only = TickInput(1, 3.0, True, experiment=measured(check, 1, "1", role="experiment"))
    verdict = evaluate(check, [only], judge_named("sequential"), has_previous=False)
    assert verdict.outcome == "pass"
    assert "no earlier successful analysis" in verdict.reason


# The schedule and the conclusion ---------------------------------------------------------


def _started(*checks: AnalysisCheck, duration_s: float = 10.0) -> AnalysisStarted:
    return AnalysisStarted(
        analysis_id="a1",
        deployment_id="d2",
        stage_id="analysis",
        started_at=T0,
        judge="pipecd",
        judge_version=judge_named("pipecd").version,
        duration_s=duration_s,
        checks=checks,
    )


def _request() -> AnalysisRequested:
    return AnalysisRequested(
        analysis_id="a1",
        deployment_id="d2",
        application_id="app",
        stage_id="analysis",
        commit_hash="c2",
        running_commit_hash="c1",
        options_json="{}",
        requested_at=T0,
    )


def test_ticks_fall_every_interval_and_the_last_at_the_duration() -> None:
    """Ticks at k·interval, the final one at the duration even off the interval's grid."""
    assert tick_count(THRESHOLD, 10.0) == 4
    assert [tick_at(THRESHOLD, k, 10.0) for k in (1, 2, 3, 4)] == [3.0, 6.0, 9.0, 10.0]
    assert tick_count(THRESHOLD, 9.0) == 3


def test_a_resumed_analysis_catches_up_prometheus_ticks_but_not_http_ones() -> None:
    """After 7 s with nothing measured: the Prometheus check owes ticks 1 and 2 (their windows
    are in the past, which Prometheus keeps); the HTTP check only its latest."""
    record = fold(enumerate([_request(), _started(THRESHOLD, HTTP)]))
    due = due_ticks(record, 7.0)
    assert [(d.key, d.tick, d.at_s) for d in due] == [
        ("metrics[0] error-rate", 1, 3.0),
        ("metrics[0] error-rate", 2, 6.0),
        ("https[0]", 1, 5.0),
    ]
    assert next_due_s(record) == 3.0
    assert conclusion(record, 7.0) is None


def _judged_history(values: list[str]) -> list[Event]:
    """A recorded analysis: each value a THRESHOLD tick, judged as the service judges."""
    events: list[Event] = [_request(), _started(THRESHOLD, duration_s=3.0 * len(values))]
    record = fold(enumerate(events))
    judge = judge_named("pipecd")
    for n, value in enumerate(values, start=1):
        m = measured(THRESHOLD, n, value)
        events.append(m)
        record = fold(enumerate(events))
        verdict = judge_tick(record, record.checks[THRESHOLD.key], n, judge)
        events.append(
            AnalysisTickJudged(
                analysis_id="a1",
                check=THRESHOLD.key,
                tick=n,
                at_s=3.0 * n,
                strategy=vocabulary.CheckStrategy.THRESHOLD,
                outcome=vocabulary.TickOutcome(verdict.outcome),
                reason=verdict.reason,
                judge=verdict.judge,
                judge_version=verdict.judge_version,
                failures=verdict.failures,
                statistics=verdict.statistics,
            )
        )
    return events


def test_the_conclusion_is_failure_at_once_or_success_when_every_check_passed() -> None:
    """One failed check concludes `failure` with its reason; all passed, `success`."""
    failing = fold(enumerate(_judged_history(["0.0", "0.5"])))
    assert conclusion(failing, 6.0) is not None
    assert conclusion(failing, 6.0).verdict == "failure"  # type: ignore[union-attr]
    passing = fold(enumerate(_judged_history(["0.0", "0.01"])))
    verdict = conclusion(passing, 6.0)
    assert verdict is not None and verdict.verdict == "success"
    assert verdict.reason.startswith("1 check(s) passed: metrics[0] error-rate (THRESHOLD)")


def test_rejudging_recorded_ticks_gives_identical_verdicts() -> None:
    """Recomputing from the recorded measurements reproduces every recorded tick verdict."""
    record = fold(enumerate(_judged_history(["0.0", "0.05", "0.01"])))
    rows = rejudge(record, judge_named("pipecd"))
    assert len(rows) == 3 and all(row.identical for row in rows)


@settings(max_examples=200, deadline=None)
@given(
    intervals=st.lists(st.sampled_from([1.0, 2.5, 3.0, 7.0]), min_size=1, max_size=3),
    duration=st.sampled_from([1.0, 6.0, 10.0, 20.0]),
    looks=st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=12),
    http=st.booleans(),
)
def test_whenever_it_looks_no_tick_is_measured_twice_and_the_last_is_at_the_duration(
    intervals: list[float], duration: float, looks: list[float], http: bool
) -> None:
    """Over any sequence of looks (a service that stalls, restarts, resumes late): ticks are
    measured in order, never twice, never past the last; once it looks at or after the
    duration the final tick of every Prometheus check is measured, at the duration."""
    checks = [
        msgspec.structs.replace(THRESHOLD, key=f"metrics[{n}]", interval_s=i)
        for n, i in enumerate(intervals)
    ]
    if http:
        checks.append(msgspec.structs.replace(HTTP, interval_s=intervals[0]))
    history: list[Event] = [_request(), _started(*checks, duration_s=duration)]
    for elapsed in sorted(looks):
        record = fold(enumerate(history))
        for due in due_ticks(record, elapsed):
            assert due.at_s <= elapsed
            history.append(measured(record.checks[due.key].check, due.tick, "0"))
    record = fold(enumerate(history))
    for check in record.checks.values():
        key = check.check.key
        ticks = [e.tick for e in history if isinstance(e, AnalysisMeasured) and e.check == key]
        assert ticks == sorted(set(ticks))
        assert all(1 <= t <= tick_count(check.check, duration) for t in ticks)
        if max(looks) >= duration:
            assert ticks[-1] == tick_count(check.check, duration)
            assert tick_at(check.check, ticks[-1], duration) == duration
            if check.check.kind == "metrics":
                assert ticks == list(range(1, tick_count(check.check, duration) + 1))


def test_a_stage_too_short_for_the_sequential_judge_is_warned_about() -> None:
    """Comparisons the sequential judge cannot fail within the duration get a warning line."""
    compare = msgspec.structs.replace(COMPARE, interval_s=60.0)
    short = msgspec.structs.replace(
        _started(compare, duration_s=120.0),
        judge="sequential",
        judge_version=judge_named("sequential").version,
    )
    warnings = too_short_to_fail(short)
    assert len(warnings) == 1 and "cannot fail within 120 s" in warnings[0]
    assert "first chance is at 540 s" in warnings[0]  # 3 batches of 3 one-minute ticks
    assert too_short_to_fail(msgspec.structs.replace(short, duration_s=1800.0)) == []
    assert too_short_to_fail(msgspec.structs.replace(short, judge="pipecd")) == []
    # A ratio of two rates is judged on its counts, which can fail at any tick.
    ratio = msgspec.structs.replace(
        compare, query="sum(rate(errors_total[1m])) / sum(rate(requests_total[1m]))"
    )
    assert too_short_to_fail(msgspec.structs.replace(short, checks=(ratio,))) == []
