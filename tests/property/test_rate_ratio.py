"""The rate-ratio test behind the sequential judge's verdicts on error ratios: its
guarantee (exactly, one tick at a time), its confidence sequence, its power, the query
shape that brings it counts, and the counts' way from the record to the judge."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.analysis.judges import Observation, SequentialJudge, Verdict
from shared.analysis.rate_ratio import Counts, RateRatio, evidence
from shared.analysis.ratio_query import COUNT_ROLES, count_queries
from shared.analysis.record import since_previous_tick
from shared.analysis.strategies import TickInput, evaluate
from shared.events import vocabulary
from shared.events.catalog import AnalysisCheck, AnalysisMeasured
from slipway_sandbox.seed_layout import DEMO_ANALYSIS_TEMPLATE

PROPERTY = settings(
    derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
THRESHOLD = math.log(1.1)


def _binomial_pmf(n: int, p: float) -> list[float]:
    return [math.comb(n, x) * p**x * (1 - p) ** (n - x) for x in range(n + 1)]


@PROPERTY
@given(
    m=st.floats(min_value=1, max_value=1e5),
    k=st.floats(min_value=1, max_value=1e5),
    n=st.integers(min_value=0, max_value=80),
    below=st.floats(min_value=0, max_value=3),
    dispersion=st.sampled_from([1.0, 1.5, 4.0]),
    sign=st.sampled_from([1.0, -1.0]),
)
def test_one_tick_of_evidence_has_mean_at_most_one_under_the_null(
    m: float, k: float, n: int, below: float, dispersion: float, sign: float
) -> None:
    """The step the anytime bound rests on, computed exactly: whatever the exposures and the
    events' total N, when the true ratio is at or beyond the null's side (ρ ≤ ρ₀ for
    "higher", ρ ≥ ρ₀ for "lower"), the tick's mixture factor averages ≤ 1 over the
    conditional binomial. The product over ticks is then a supermartingale and Ville's
    inequality bounds P(ever ≥ 1/α) by α for any stopping time."""
    log_null = sign * THRESHOLD
    log_true = log_null - sign * below
    p = m * math.exp(log_true) / (m * math.exp(log_true) + k)
    mean = math.fsum(
        weight * math.exp(evidence([Counts(x, m, n - x, k)], log_null, sign, dispersion))
        for x, weight in enumerate(_binomial_pmf(n, p))
    )
    assert mean <= 1 + 1e-9


def test_the_false_fail_rate_at_the_threshold_stays_below_alpha_over_every_look() -> None:
    """Poisson counts exactly at the threshold (×1.1), 30 one-minute ticks, looking after
    every tick with no tempering (φ = 1, the tightest case): the share that ever crosses
    1/α stays under α = 1 %. A fixed-sample one-sided z-test at the 1 % level, repeated at
    every look, fails several times as many."""
    rng = np.random.default_rng(20261207)
    runs, ticks = 600, 30
    test = RateRatio(1.0, THRESHOLD, math.log(100), 1.0)
    crossed = naive = 0
    for _ in range(runs):
        y = rng.poisson(12.0, ticks)
        x = rng.poisson(12.0 * 1.1, ticks)
        counts = [Counts(float(a), 1200.0, float(b), 1200.0) for a, b in zip(x, y, strict=True)]
        crossed += test.first_crossing(counts)[0] is not None
        sx, sy = np.cumsum(x) + 0.5, np.cumsum(y) + 0.5
        z = (np.log(sx / sy) - THRESHOLD) / np.sqrt(1 / sx + 1 / sy)
        naive += bool((z > 2.326).any())
    assert crossed / runs <= 0.01
    assert naive / runs >= 3 * max(crossed / runs, 0.01)


def _ticks(xs: list[float], ys: list[float], m: float = 6000.0, k: float = 6000.0) -> list[Counts]:
    return [Counts(x, m, y, k) for x, y in zip(xs, ys, strict=True)]


def _observations(counts: list[Counts], interval_s: float = 300.0) -> list[Observation]:
    # The ratio samples are whatever: with counts, the judge decides on the counts.
    return [
        Observation((i + 1) * interval_s, (0.01,), (0.01,), counts=c) for i, c in enumerate(counts)
    ]


def test_a_doubled_error_rate_fails_at_ten_minutes_with_one_checkable_line() -> None:
    """Twice the baseline's errors (120 vs 60 of 6,000 requests a 5-minute tick) fails at
    the second tick; the reason gives the estimate, the confidence sequence and the
    threshold, and they agree."""
    verdict = SequentialJudge().judge(
        _observations(_ticks([120.0] * 6, [60.0] * 6)),
        deviation="HIGH",
        failure_limit=0,
        final=False,
    )
    assert verdict.outcome == "fail", verdict.reason
    assert verdict.statistics["failed_at_tick"] == 2.0
    assert verdict.statistics["rate_ratio"] == 2.0
    assert verdict.statistics["lower_bound"] >= 1.1
    assert "event rate 2× control's (240/12000 vs 120/12000 in 2 tick(s))" in verdict.reason
    assert f"99% confidence sequence ≥ {verdict.statistics['lower_bound']:.3g}×" in verdict.reason
    assert "beyond the threshold 1.1×" in verdict.reason


def test_no_failure_below_the_threshold_or_in_the_other_direction() -> None:
    """×1.05 for half an hour, and a canary with half the errors under HIGH, both pass."""
    judge = SequentialJudge()
    slightly = judge.judge(
        _observations(_ticks([63.0] * 6, [60.0] * 6)), deviation="HIGH", failure_limit=0, final=True
    )
    better = judge.judge(
        _observations(_ticks([30.0] * 6, [60.0] * 6)), deviation="HIGH", failure_limit=0, final=True
    )
    assert (slightly.outcome, better.outcome) == ("pass", "pass")
    assert slightly.statistics["lower_bound"] < 1.1 <= slightly.statistics["rate_ratio"] + 0.1
    lower = judge.judge(
        _observations(_ticks([30.0] * 6, [60.0] * 6)),
        deviation="EITHER",
        failure_limit=0,
        final=True,
    )
    assert lower.outcome == "fail" and lower.reason.startswith("experiment lower than control")
    assert lower.statistics["upper_bound"] <= 1 / 1.1


counts_lists = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=200),
        st.integers(min_value=0, max_value=200),
        st.sampled_from([100.0, 1200.0, 6000.0]),
    ),
    min_size=1,
    max_size=8,
).map(lambda rows: [Counts(float(x), total, float(y), 6000.0) for x, y, total in rows])


def _fingerprint(verdict: Verdict) -> tuple[str, str, tuple[tuple[str, bytes], ...]]:
    return (
        verdict.outcome,
        verdict.reason,
        tuple((k, struct.pack("<d", v)) for k, v in sorted(verdict.statistics.items())),
    )


@PROPERTY
@given(counts_lists, st.sampled_from(["HIGH", "LOW", "EITHER"]))
def test_the_verdict_is_its_confidence_sequence_against_the_threshold(
    counts: list[Counts], deviation: str
) -> None:
    """Fails exactly when the confidence bound is past the threshold (the evidence is
    monotone in the ratio tested), is the same bit for bit when recomputed, and names the
    same failing tick whether the judge was called after every tick or once."""
    judge = SequentialJudge()
    observations = _observations(counts)
    once = judge.judge(observations, deviation=deviation, failure_limit=0, final=False)  # type: ignore[arg-type]
    again = judge.judge(list(observations), deviation=deviation, failure_limit=0, final=False)  # type: ignore[arg-type]
    assert _fingerprint(once) == _fingerprint(again)
    stats = once.statistics
    beyond = stats.get("lower_bound", 0.0) >= 1.1 * (1 - 1e-6) or stats.get(
        "upper_bound", math.inf
    ) <= (1 / 1.1) * (1 + 1e-6)
    inside = stats.get("lower_bound", 0.0) <= 1.1 * (1 + 1e-6) and stats.get(
        "upper_bound", math.inf
    ) >= (1 / 1.1) * (1 - 1e-6)
    if once.outcome == "fail":
        assert beyond, once.reason
        first = next(
            n
            for n in range(1, len(observations) + 1)
            if judge.judge(
                observations[:n],
                deviation=deviation,  # type: ignore[arg-type]
                failure_limit=0,
                final=False,
            ).outcome
            == "fail"
        )
        assert stats["failed_at_tick"] == float(first)
    else:
        assert inside, once.reason


wild = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1e-320, 1e15, 2e15, 1e308, -1.0, math.nan, math.inf]),
)


@PROPERTY
@given(
    st.lists(st.tuples(wild, wild, wild, wild), min_size=1, max_size=6),
    st.sampled_from(["HIGH", "LOW", "EITHER"]),
    st.booleans(),
)
def test_any_counts_from_prometheus_get_a_verdict(
    rows: list[tuple[float, float, float, float]], deviation: str, final: bool
) -> None:
    """Counts are untrusted: NaN, infinities, negatives, denormals and absurd sizes never
    raise; they are left out (no evidence), and the verdict is deterministic."""
    observations = _observations([Counts(*row) for row in rows])
    judge = SequentialJudge()
    first = judge.judge(observations, deviation=deviation, failure_limit=0, final=final)  # type: ignore[arg-type]
    again = judge.judge(observations, deviation=deviation, failure_limit=0, final=final)  # type: ignore[arg-type]
    assert _fingerprint(first) == _fingerprint(again)
    assert first.outcome in (("pass", "fail") if final else ("continue", "fail"))


# --- the query shape -----------------------------------------------------------------------

SEED_QUERY = DEMO_ANALYSIS_TEMPLATE.format(interval="5m", window="1m").split("query: |\n")[1]


def test_the_seeds_error_rate_query_gives_the_counters_behind_it() -> None:
    """`sum(rate(x{…}[1m])) / sum(rate(y{…}[1m]))` → `sum(x{…})` and `sum(y{…})`."""
    queries = count_queries(SEED_QUERY)
    assert queries is not None
    events, total = queries
    assert events.startswith('sum(grpc_server_handled_total{grpc_code!="OK",')
    assert events.endswith('pipecd_dev_variant="canary"})') and total.endswith('"canary"})')
    assert "rate(" not in events + total and "[" not in events + total
    assert 'grpc_code!="OK"' not in total
    simple = count_queries('rate(errors_total{path="/a/b"}[1m]) / rate(requests_total[1m])')
    assert simple == ('errors_total{path="/a/b"}', "requests_total")
    grouped = count_queries("sum by (job) (rate(e[5m])) / sum by (job) (rate(r[5m]))")
    assert grouped == ("sum by (job) (e)", "sum by (job) (r)")


@pytest.mark.parametrize(
    "query",
    [
        "sum(rate(latency_seconds_sum[1m])) / sum(rate(latency_seconds_count[1m]))",
        "sum(rate(errors_total[1m])) / sum(rate(requests_total[1m])) * 100",
        "sum(rate(errors_total[1m])) / sum(rate(requests_total[1m])) > 0.01",
        "rate(errors_total[5m:30s]) / rate(requests_total[5m])",
        "irate(errors_total[1m]) / irate(requests_total[1m])",
        "rate(errors_total[1m] offset 5m) / rate(requests_total[1m])",
        "histogram_quantile(0.99, sum(rate(latency_bucket[1m])) by (le))",
        "sum(rate(errors_total[1m])) / (sum(rate(requests_total[1m])",
        "rate(a[1m]) / rate(b[1m]) / rate(c[1m])",
    ],
)
def test_other_shapes_are_judged_on_their_samples(query: str) -> None:
    assert count_queries(query) is None


# --- from the record to the judge -----------------------------------------------------------

CHECK = AnalysisCheck(
    key="metrics[0] errors",
    kind=vocabulary.CheckKind.METRICS,
    strategy=vocabulary.CheckStrategy.CANARY_BASELINE,
    interval_s=300.0,
    query="rate(errors_total[1m]) / rate(requests_total[1m])",
    deviation=vocabulary.Deviation.HIGH,
)


def _measured(tick: int, role: str, *values: str, error: str = "") -> AnalysisMeasured:
    return AnalysisMeasured(
        analysis_id="a",
        check=CHECK.key,
        tick=tick,
        role=vocabulary.SampleRole(role),
        values=values,
        error=error,
    )


def _counters(
    tick: int, role: str, start: tuple[str, ...], end: tuple[str, ...]
) -> AnalysisMeasured:
    """A counter query's answer at the previous tick's instant and this one's."""
    t0, t1 = 1e9 + 300.0 * (tick - 1), 1e9 + 300.0 * tick
    return AnalysisMeasured(
        analysis_id="a",
        check=CHECK.key,
        tick=tick,
        role=vocabulary.SampleRole(role),
        window_start=t0,
        window_end=t1,
        step_s=300.0,
        timestamps=(t0,) * len(start) + (t1,) * len(end),
        values=start + end,
    )


def _tick(
    tick: int, counts: Mapping[vocabulary.SampleRole, AnalysisMeasured], final: bool = False
) -> TickInput:
    return TickInput(
        tick=tick,
        at_s=300.0 * tick,
        final=final,
        experiment=_measured(tick, "experiment", "0.02", "0.02"),
        control=_measured(tick, "control", "0.01", "0.01"),
        counts={str(role): measured for role, measured in counts.items()},
    )


def test_count_windows_never_overlap_even_at_a_short_last_tick() -> None:
    """Ticks at 4, 8 and 9 s (duration 9 s, interval 4 s): counts over 4, 4 and 1 s."""
    check = msgspec.structs.replace(CHECK, interval_s=4.0)
    assert [since_previous_tick(check, t, 9.0) for t in (1, 2, 3)] == [4.0, 4.0, 1.0]


def test_recorded_counters_reach_the_judge_and_unusable_ones_carry_no_evidence() -> None:
    """A count is the counters' growth between the two instants, summed over series (a
    series first seen at the end counts from zero); an events query without series is 0
    events; a failed count query, or a counter that went down (a reset), leaves its
    tick without evidence (not a failed tick)."""
    (e_events, e_total), (c_events, c_total) = COUNT_ROLES["experiment"], COUNT_ROLES["control"]
    good = {
        e_events: _counters(1, e_events, ("10", "5"), ("80", "55")),
        e_total: _counters(1, e_total, ("1000",), ("7000",)),
        c_events: _counters(1, c_events, (), ()),  # no series: 0 errors
        c_total: _counters(1, c_total, (), ("6000",)),  # first seen now: from zero
    }
    broken = dict(good) | {c_total: _measured(2, c_total, error="Prometheus prom timed out")}
    reset = dict(good) | {e_total: _counters(3, e_total, ("7000",), ("40",))}
    ticks = [_tick(1, good), _tick(2, broken), _tick(3, reset, final=True)]
    verdict = evaluate(CHECK, ticks, SequentialJudge())
    stats = dict(verdict.statistics)
    assert verdict.outcome == "fail" and verdict.failures == 0
    assert float(stats["experiment_events"]) == 120.0 and float(stats["control_events"]) == 0.0
    assert float(stats["experiment_total"]) == 6000.0
    assert float(stats["failed_at_tick"]) == 1.0
    unusable = evaluate(CHECK, [_tick(2, broken), _tick(3, reset, final=True)], SequentialJudge())
    assert unusable.outcome == "pass" and "in 0 tick(s)" in unusable.reason
    assert float(dict(unusable.statistics)["ticks_without_counts"]) == 2.0


def test_without_counts_the_judge_is_the_t_test_on_ratio_samples() -> None:
    """A check whose ticks carry no counts (another query shape, or a record from before
    counts were measured) is judged on its samples, which cannot fail before 3 batches."""
    ticks = [
        TickInput(
            tick=t,
            at_s=300.0 * t,
            final=False,
            experiment=_measured(t, "experiment", *("0.02",) * 11),
            control=_measured(t, "control", *("0.01",) * 11),
        )
        for t in (1, 2)
    ]
    verdict = evaluate(CHECK, ticks, SequentialJudge())
    assert verdict.outcome == "continue" and "Bayes factor" in verdict.reason
