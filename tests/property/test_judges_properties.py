"""Properties of both judges over arbitrary observations (Hypothesis, seeded)."""

from __future__ import annotations

import math
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.analysis.judges import JUDGE_NAMES, Deviation, Observation, Verdict, judge_named
from shared.analysis.stats import SamplesEqualError, mann_whitney_u

# Seeded: the same examples on every run and machine, so a failure reproduces as is.
PROPERTY = settings(
    derandomize=True, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)

values = st.one_of(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.sampled_from([0.0, 0.01, 0.12, -1.0, math.nan, math.inf]),
)
samples = st.lists(values, max_size=12).map(tuple)
observation_lists = st.lists(st.tuples(samples, samples), max_size=12).map(
    lambda pairs: [Observation(60.0 * (i + 1), e, c) for i, (e, c) in enumerate(pairs)]
)
deviations = st.sampled_from(["HIGH", "LOW", "EITHER"])


def fingerprint(verdict: Verdict) -> tuple[str, str, tuple[tuple[str, bytes], ...]]:
    return (
        verdict.outcome,
        verdict.reason,
        tuple((k, struct.pack("<d", v)) for k, v in sorted(verdict.statistics.items())),
    )


@PROPERTY
@given(observation_lists, deviations, st.integers(min_value=0, max_value=3), st.booleans())
def test_judges_answer_any_input_deterministically(
    observations: list[Observation], deviation: Deviation, failure_limit: int, final: bool
) -> None:
    """Any samples (zeros, negatives, NaN, inf, empty) get a verdict, the same one twice,
    never `continue` at final."""
    for name in JUDGE_NAMES:
        first = judge_named(name).judge(
            observations, deviation=deviation, failure_limit=failure_limit, final=final
        )
        again = judge_named(name).judge(
            list(observations), deviation=deviation, failure_limit=failure_limit, final=final
        )
        assert fingerprint(first) == fingerprint(again)
        if final:
            assert first.outcome in ("pass", "fail")


@PROPERTY
@given(observation_lists, deviations, st.integers(min_value=0, max_value=3))
def test_a_failed_prefix_stays_failed(
    observations: list[Observation], deviation: Deviation, failure_limit: int
) -> None:
    """Once a prefix of the ticks fails, every longer prefix fails at the same tick."""
    for name in JUDGE_NAMES:
        judge = judge_named(name)
        failed_at = None
        for n in range(1, len(observations) + 1):
            verdict = judge.judge(
                observations[:n], deviation=deviation, failure_limit=failure_limit, final=False
            )
            if failed_at is not None:
                assert verdict.outcome == "fail"
                assert verdict.statistics["failed_at_tick"] == failed_at
            elif verdict.outcome == "fail":
                failed_at = verdict.statistics["failed_at_tick"]


finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False).map(lambda v: round(v, 1))


@PROPERTY
@given(st.lists(finite, min_size=1, max_size=9), st.lists(finite, min_size=1, max_size=9))
def test_mann_whitney_p_values_are_probabilities_and_mirror(
    x1: list[float], x2: list[float]
) -> None:
    """p ≥ 0, one-sided p ≤ 1 (two-sided may exceed 1 with ties, uncapped as in go-moremath);
    swapping the samples swaps LESS and GREATER when there are no ties."""
    try:
        results = {a: mann_whitney_u(x1, x2, a) for a in ("LESS", "GREATER", "EITHER")}
    except SamplesEqualError:
        assert len(set(x1 + x2)) == 1
        return
    assert all(result.p >= 0.0 for result in results.values())
    assert results["LESS"].p <= 1.0 + 1e-12
    assert results["GREATER"].p <= 1.0 + 1e-12
    if len(set(x1 + x2)) == len(x1) + len(x2):
        assert results["EITHER"].p <= 1.0 + 1e-12
        swapped = mann_whitney_u(x2, x1, "GREATER")
        assert swapped.p == results["LESS"].p or math.isclose(
            swapped.p, results["LESS"].p, rel_tol=1e-12
        )


positive = st.lists(st.floats(min_value=0.001, max_value=1e3), min_size=1, max_size=6).map(tuple)


@PROPERTY
@given(st.lists(st.tuples(positive, positive), min_size=2, max_size=10))
def test_the_sequential_t_test_fails_exactly_when_its_confidence_sequence_clears_the_threshold(
    pairs: list[tuple[tuple[float, ...], tuple[float, ...]]],
) -> None:
    """The reason's confidence sequence for the ratio of means is the test inverted: past
    1.1× when (and only when) the verdict is a failure."""
    observations = [Observation(300.0 * (i + 1), e, c) for i, (e, c) in enumerate(pairs)]
    verdict = judge_named("sequential").judge(
        observations, deviation="HIGH", failure_limit=0, final=True
    )
    bound = verdict.statistics["lower_bound"]
    if verdict.outcome == "fail":
        assert bound >= 1.1 * (1 - 1e-9), verdict.reason
    else:
        assert bound <= 1.1 * (1 + 1e-9), verdict.reason
    assert f"ratio of means ≥ {bound:.3g}×, threshold 1.1×" in verdict.reason
