"""The judges: PipeCD's Mann-Whitney test against references, the sequential test's guarantees."""

from __future__ import annotations

import itertools
import math
import random
import re
import struct
from collections.abc import Sequence

import pytest
from scipy import integrate
from scipy import stats as sps

from shared.analysis.judges import (
    DEFAULT_JUDGE,
    JUDGE_NAMES,
    Deviation,
    Judge,
    Observation,
    PipeCDJudge,
    SequentialJudge,
    UnknownJudgeError,
    Verdict,
    judge_named,
)
from shared.analysis.stats import (
    Alternative,
    SamplesEqualError,
    mann_whitney_u,
    safe_t_bayes_factor,
)
from shared.errors import ConfigError

SCIPY_ALTERNATIVE: dict[Alternative, str] = {
    "LESS": "less",
    "GREATER": "greater",
    "EITHER": "two-sided",
}
ALTERNATIVES: tuple[Alternative, ...] = ("LESS", "EITHER", "GREATER")


# --- Mann-Whitney U against references ------------------------------------------------


def test_mann_whitney_matches_go_moremath_test_vectors() -> None:
    """U and p equal the vectors of go-moremath's own test (as vendored by PipeCD)."""
    s1, s2, s3 = [2.0, 1, 3, 5], [12.0, 11, 13, 15], [0.0, 4, 6, 7]
    s4, s5 = [2.0] * 4, [1.0] * 5
    l1 = [float(i * 2) for i in range(500)]
    l2 = [float(i * 2 - 41) for i in range(600)]
    l3 = l1[:30] + l2[30:]
    cases = [
        (s1, s2, 0, (0.014285714285714289, 0.028571428571428577, 1)),
        (s2, s1, 16, (1, 0.028571428571428577, 0.014285714285714289)),
        (s1, s3, 5, (0.24285714285714288, 0.485714285714285770, 0.8285714285714285)),
        (s1, s1, 8, (0.6285714285714286, 1, 0.6285714285714286)),
        (s1, s4, 10, (0.8571428571428571, 0.7142857142857143, 0.3571428571428571)),
        (s1, s5, 17.5, (1, 0, 0.04761904761904767)),
        (l1, l2, 135250, (0.0024667680407086112, 0.0049335360814172224, 0.9975346930458906)),
        (l1, l1, 125000, (0.5000436801680628, 1, 0.5000436801680628)),
        (l1, l3, 134845, (0.0019351907119808942, 0.0038703814239617884, 0.9980659818257166)),
    ]
    for x1, x2, u, ps in cases:
        for alternative, p in zip(ALTERNATIVES, ps, strict=True):
            result = mann_whitney_u(x1, x2, alternative)
            assert result.u == u
            assert result.p == pytest.approx(p, rel=1e-12, abs=1e-15), (x1[:5], alternative)
    with pytest.raises(SamplesEqualError):
        mann_whitney_u(s4, s4, "EITHER")


def test_mann_whitney_exact_matches_scipy_without_ties() -> None:
    """With no ties and ≤ 50 values a side, p is scipy's exact p-value, for every alternative."""
    rng = random.Random(7)
    for _ in range(400):
        n1, n2 = rng.randint(1, 20), rng.randint(1, 20)
        shift = rng.choice([0.0, 0.5, 1.5])
        x1 = [rng.gauss(shift, 1) for _ in range(n1)]
        x2 = [rng.gauss(0, 1) for _ in range(n2)]
        for alternative in ALTERNATIVES:
            ours = mann_whitney_u(x1, x2, alternative)
            ref = sps.mannwhitneyu(
                x1, x2, alternative=SCIPY_ALTERNATIVE[alternative], method="exact"
            )
            assert ours.exact
            assert ours.u == ref.statistic
            assert ours.p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)


def test_mann_whitney_normal_approximation_matches_scipy_with_ties() -> None:
    """Beyond the exact limits, p is scipy's asymptotic p (tie and continuity corrections)."""
    rng = random.Random(11)
    for _ in range(200):
        n1, n2 = rng.randint(26, 90), rng.randint(26, 90)
        x1 = [float(rng.randint(0, 12)) for _ in range(n1)]
        x2 = [float(rng.randint(0, rng.choice([10, 12, 14]))) for _ in range(n2)]
        for alternative in ALTERNATIVES:
            ours = mann_whitney_u(x1, x2, alternative)
            ref = sps.mannwhitneyu(
                x1, x2, alternative=SCIPY_ALTERNATIVE[alternative], method="asymptotic"
            )
            assert not ours.exact
            assert ours.p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)
    # No ties but more than 50 values: the normal approximation too.
    x1 = [rng.gauss(0.3, 1) for _ in range(60)]
    x2 = [rng.gauss(0, 1) for _ in range(55)]
    ours = mann_whitney_u(x1, x2, "GREATER")
    ref = sps.mannwhitneyu(x1, x2, alternative="greater", method="asymptotic")
    assert not ours.exact
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-9)


def _permutation_us(x1: Sequence[float], x2: Sequence[float]) -> list[float]:
    pooled = [*x1, *x2]
    us = []
    for chosen in itertools.combinations(range(len(pooled)), len(x1)):
        first = [pooled[i] for i in chosen]
        second = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        us.append(sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in first for b in second))
    return us


def test_mann_whitney_exact_with_ties_matches_enumeration() -> None:
    """With ties and small samples p is exact: checked against all permutations of the labels."""
    rng = random.Random(3)
    checked = 0
    for _ in range(150):
        n1, n2 = rng.randint(1, 6), rng.randint(1, 6)
        x1 = [float(rng.randint(0, 3)) for _ in range(n1)]
        x2 = [float(rng.randint(0, 4)) for _ in range(n2)]
        if len(set(x1 + x2)) == 1:
            with pytest.raises(SamplesEqualError):
                mann_whitney_u(x1, x2, "LESS")
            continue
        us = _permutation_us(x1, x2)
        u1 = mann_whitney_u(x1, x2, "LESS").u
        u2 = n1 * n2 - u1
        total = len(us)
        less = sum(u <= u1 for u in us) / total
        # go-moremath's GREATER is 1 − CDF(U₁ − 1): with ties that is P(U ≥ U₁ − ½).
        greater = sum(u >= u1 - 0.5 for u in us) / total
        either = 1.0 if u1 == u2 else 2 * sum(u <= min(u1, u2) for u in us) / total
        assert mann_whitney_u(x1, x2, "LESS").p == pytest.approx(less, abs=1e-12)
        assert mann_whitney_u(x1, x2, "GREATER").p == pytest.approx(greater, abs=1e-12)
        assert mann_whitney_u(x1, x2, "EITHER").p == pytest.approx(either, abs=1e-12)
        if n1 >= 2 and n2 >= 2:
            # And LESS is the textbook exact permutation p-value, as scipy computes it.
            ref = sps.mannwhitneyu(
                x1, x2, alternative="less", method=sps.PermutationMethod(n_resamples=10**6)
            )
            assert mann_whitney_u(x1, x2, "LESS").p == pytest.approx(ref.pvalue, rel=1e-9)
        checked += 1
    assert checked > 100


def test_mann_whitney_rejects_an_empty_sample() -> None:
    """An empty sample is a clear error, not a p-value."""
    with pytest.raises(ValueError, match="at least one value"):
        mann_whitney_u([], [1.0], "EITHER")


def test_safe_t_bayes_factor_is_the_integrated_likelihood_ratio() -> None:
    """The closed form equals ∫ noncentral-t(t; √n·δ) N(δ; 0, g) dδ / t(t) numerically."""
    for t, n, g in [(0.0, 2, 1.0), (1.5, 3, 4.0), (-2.0, 5, 10.0), (6.0, 4, 100.0), (3.0, 10, 0.5)]:
        df = n - 1
        sd = math.sqrt(g)

        def integrand(
            delta: float, t: float = t, n: int = n, df: int = df, sd: float = sd
        ) -> float:
            return float(sps.nct.pdf(t, df, delta * math.sqrt(n)) * sps.norm.pdf(delta, 0, sd))

        numerator, _ = integrate.quad(integrand, -12 * sd, 12 * sd, limit=400, points=[0.0])
        expected = numerator / float(sps.t.pdf(t, df))
        assert safe_t_bayes_factor(t, n, g) == pytest.approx(expected, rel=1e-5)
    assert safe_t_bayes_factor(math.inf, 4, 100.0) == pytest.approx(401**1.5)


# --- the pipecd judge -----------------------------------------------------------------


def tick(at: float, experiment: Sequence[float], control: Sequence[float]) -> Observation:
    return Observation(at=at, experiment=tuple(experiment), control=tuple(control))


HIGHER = tick(300, [5.0, 6, 7, 8, 9], [1.0, 2, 3, 4, 4.5])  # exact one-sided p = 1/252
LOWER = tick(300, [1.0, 2, 3, 4, 4.5], [5.0, 6, 7, 8, 9])
MIXED = tick(300, [1.0, 3, 5, 7, 9], [2.0, 4, 6, 8, 10])


def test_pipecd_fails_the_tick_in_the_deviation_direction_only() -> None:
    """HIGH fails a higher experiment, LOW a lower one, EITHER both; p ≤ 0.05 is the bar."""
    judge = PipeCDJudge()

    def outcome(obs: Observation, deviation: Deviation) -> str:
        return judge.judge([obs], deviation=deviation, failure_limit=0, final=False).outcome

    assert outcome(HIGHER, "HIGH") == "fail"
    assert outcome(LOWER, "HIGH") == "continue"
    assert outcome(LOWER, "LOW") == "fail"
    assert outcome(HIGHER, "LOW") == "continue"
    assert outcome(HIGHER, "EITHER") == "fail"
    assert outcome(LOWER, "EITHER") == "fail"
    assert outcome(MIXED, "EITHER") == "continue"
    verdict = judge.judge([HIGHER], deviation="HIGH", failure_limit=0, final=False)
    assert verdict.statistics["last_p"] == pytest.approx(1 / 252)
    assert "p=0.00397 ≤ 0.05" in verdict.reason


def test_pipecd_fails_when_failed_ticks_exceed_the_failure_limit() -> None:
    """failureLimit 2 tolerates two significant ticks and fails on the third, at that tick."""
    judge = PipeCDJudge()
    ticks = [HIGHER, MIXED, HIGHER, HIGHER, MIXED]
    for n in range(1, 4):
        verdict = judge.judge(ticks[:n], deviation="HIGH", failure_limit=2, final=False)
        assert verdict.outcome == "continue"
    verdict = judge.judge(ticks[:4], deviation="HIGH", failure_limit=2, final=False)
    assert verdict.outcome == "fail"
    assert verdict.statistics["failed_at_tick"] == 4
    assert verdict.statistics["failed_ticks"] == 3
    passed = judge.judge(ticks[:3], deviation="HIGH", failure_limit=2, final=True)
    assert passed.outcome == "pass"


def test_pipecd_passes_ticks_with_equal_or_missing_samples() -> None:
    """All-equal samples (ErrSamplesEqual), an empty side and NaN-only data are not failures."""
    judge = PipeCDJudge()
    ticks = [
        tick(60, [0.0, 0.0, 0.0], [0.0, 0.0]),
        tick(120, [], [1.0, 2.0]),
        tick(180, [math.nan], [1.0]),
    ]
    verdict = judge.judge(ticks, deviation="EITHER", failure_limit=0, final=True)
    assert verdict.outcome == "pass"
    assert verdict.statistics["tested_ticks"] == 0


# --- the sequential judge -------------------------------------------------------------


def noisy_ticks(
    rng: random.Random, *, ratio: float, ticks: int, interval_s: float = 300, noise: float = 0.1
) -> list[Observation]:
    """Ticks of 6 samples a side; each tick's canary level is `ratio` × baseline's, times noise."""
    out = []
    for j in range(ticks):
        level_c = 100 * math.exp(rng.gauss(0, noise))
        level_e = 100 * ratio * math.exp(rng.gauss(0, noise))
        out.append(
            tick(
                (j + 1) * interval_s,
                [level_e * math.exp(rng.gauss(0, 0.01)) for _ in range(6)],
                [level_c * math.exp(rng.gauss(0, 0.01)) for _ in range(6)],
            )
        )
    return out


def test_sequential_false_fail_rate_is_bounded_over_all_looks() -> None:
    """At the threshold itself (canary 10 % worse) and in A/A, ≤ 1 % of 30-tick runs ever fail."""
    judge = SequentialJudge(batch_s=0)
    rng = random.Random(2026)
    runs = 1500
    at_boundary = sum(
        judge.judge(
            noisy_ticks(rng, ratio=1.1, ticks=30), deviation="HIGH", failure_limit=0, final=True
        ).outcome
        == "fail"
        for _ in range(runs)
    )
    a_a = sum(
        judge.judge(
            noisy_ticks(rng, ratio=1.0, ticks=30, noise=0.3),
            deviation="EITHER",
            failure_limit=0,
            final=True,
        ).outcome
        == "fail"
        for _ in range(runs)
    )
    # α = 1 %: 15 expected at most; 27 is that plus three binomial standard deviations.
    assert at_boundary <= 27, at_boundary
    assert a_a <= 27, a_a


def test_sequential_fails_a_clear_regression_before_the_end() -> None:
    """Latency +50 % with 3 % tick noise fails, mostly by the fourth 5-minute tick of six."""
    judge = SequentialJudge()
    rng = random.Random(5)
    failed_at = []
    for _ in range(200):
        verdict = judge.judge(
            noisy_ticks(rng, ratio=1.5, ticks=6, noise=0.03),
            deviation="HIGH",
            failure_limit=0,
            final=True,
        )
        if verdict.outcome == "fail":
            failed_at.append(verdict.statistics["failed_at_tick"])
            reason = verdict.reason
    assert len(failed_at) >= 195
    assert sorted(failed_at)[len(failed_at) // 2] <= 4
    assert "higher than control by more than 10%" in reason
    # One line a person can check: the confidence sequence against the threshold.
    assert re.search(r"99% confidence sequence for the ratio of means ≥ [0-9.]+×", reason)
    assert "threshold 1.1×" in reason


def test_sequential_ignores_a_regression_below_the_threshold_and_the_wrong_direction() -> None:
    """A 3 % regression, or a big improvement under HIGH, passes at final."""
    judge = SequentialJudge()
    rng = random.Random(8)
    small = noisy_ticks(rng, ratio=1.03, ticks=6, noise=0.01)
    better = noisy_ticks(rng, ratio=0.5, ticks=6)
    assert judge.judge(small, deviation="HIGH", failure_limit=0, final=True).outcome == "pass"
    assert judge.judge(better, deviation="HIGH", failure_limit=0, final=True).outcome == "pass"
    assert judge.judge(better, deviation="LOW", failure_limit=0, final=True).outcome == "fail"


def test_sequential_pools_short_ticks_into_batches() -> None:
    """1-minute ticks are judged in 3-minute batches: nothing before the sixth tick."""
    judge = SequentialJudge()
    rng = random.Random(9)
    ticks = noisy_ticks(rng, ratio=3.0, ticks=12, interval_s=60, noise=0.01)
    for n in range(1, 6):
        assert (
            judge.judge(ticks[:n], deviation="HIGH", failure_limit=0, final=False).outcome
            == "continue"
        )
    verdict = judge.judge(ticks, deviation="HIGH", failure_limit=0, final=False)
    assert verdict.outcome == "fail"
    assert verdict.statistics["failed_at_tick"] % 3 == 0


def test_sequential_batches_by_tick_time_when_ticks_are_missing() -> None:
    """Ticks the service skipped (no data) leave holes: batches follow `at`, not the count."""
    judge = SequentialJudge()
    rng = random.Random(10)
    ticks = noisy_ticks(rng, ratio=3.0, ticks=12, interval_s=60, noise=0.01)
    holed = [t for t in ticks if t.at not in (120.0, 300.0)]  # ticks 2 and 5 had no data
    verdict = judge.judge(holed, deviation="HIGH", failure_limit=0, final=False)
    assert verdict.outcome == "fail"
    # Batches (1-3), (4-6), (7-9): the third completes with tick 9, the 7th observation.
    assert verdict.statistics["failed_at_tick"] == 7
    assert verdict.statistics["n"] == 3


def test_sequential_numbers_a_short_final_tick_on_its_own() -> None:
    """A 1000 s stage with 300 s ticks: the final tick at 1000 s neither joins tick 3's batch
    nor shrinks the interval, so the first three verdicts stand unchanged at final."""
    judge = SequentialJudge()
    rng = random.Random(12)
    ticks = noisy_ticks(rng, ratio=1.0, ticks=3, noise=0.05)
    ticks.append(tick(1000, [500.0] * 6, [100.0] * 6))
    before = judge.judge(ticks[:3], deviation="HIGH", failure_limit=0, final=False)
    at_final = judge.judge(ticks, deviation="HIGH", failure_limit=0, final=True)
    assert at_final.statistics["n"] == before.statistics["n"] + 1 == 4
    assert at_final.statistics["t_higher"] != before.statistics["t_higher"]


def test_sequential_handles_zero_and_missing_data() -> None:
    """Zero error ratios on both sides, empty ticks and NaN are no evidence, never a crash."""
    judge = SequentialJudge()
    ticks = [tick(300 * (j + 1), [0.0, 0.0], [0.0, math.nan]) for j in range(6)]
    ticks[2] = tick(900, [], [])
    verdict = judge.judge(ticks, deviation="EITHER", failure_limit=0, final=True)
    assert verdict.outcome == "pass"
    # A canary with errors against a baseline with none, every tick: a regression.
    ticks = [tick(300 * (j + 1), [0.02, 0.03], [0.0, 0.0]) for j in range(6)]
    assert judge.judge(ticks, deviation="HIGH", failure_limit=0, final=True).outcome == "fail"


# --- both judges ----------------------------------------------------------------------


@pytest.mark.parametrize("name", JUDGE_NAMES)
def test_verdicts_are_deterministic_bit_for_bit(name: str) -> None:
    """The same observations give an identical verdict, every float bit included."""
    rng = random.Random(13)
    ticks = noisy_ticks(rng, ratio=1.2, ticks=6)

    def fingerprint(verdict: Verdict) -> tuple[str, str, tuple[tuple[str, bytes], ...]]:
        floats = tuple((k, struct.pack("<d", v)) for k, v in sorted(verdict.statistics.items()))
        return verdict.outcome, verdict.reason, floats

    for deviation in ("HIGH", "LOW", "EITHER"):
        first = judge_named(name).judge(ticks, deviation=deviation, failure_limit=1, final=True)
        again = judge_named(name).judge(
            [Observation(o.at, tuple(o.experiment), tuple(o.control)) for o in ticks],
            deviation=deviation,
            failure_limit=1,
            final=True,
        )
        assert fingerprint(first) == fingerprint(again)


@pytest.mark.parametrize("name", JUDGE_NAMES)
def test_calling_after_every_tick_gives_the_same_verdict_as_one_call(name: str) -> None:
    """The service's tick-by-tick calls and one call over all ticks agree on verdict and tick."""
    judge = judge_named(name)
    rng = random.Random(17)
    for ratio in (1.0, 1.3, 2.0):
        ticks = noisy_ticks(rng, ratio=ratio, ticks=10, interval_s=60)
        stepwise: Verdict | None = None
        for n in range(1, len(ticks) + 1):
            stepwise = judge.judge(
                ticks[:n], deviation="HIGH", failure_limit=1, final=n == len(ticks)
            )
            if stepwise.outcome != "continue":
                break
        assert stepwise is not None
        once = judge.judge(ticks, deviation="HIGH", failure_limit=1, final=True)
        assert once.outcome == stepwise.outcome
        assert once.statistics.get("failed_at_tick") == stepwise.statistics.get("failed_at_tick")


@pytest.mark.parametrize("name", JUDGE_NAMES)
def test_final_never_continues(name: str) -> None:
    """With final=True the answer is pass or fail, even with no observations at all."""
    judge: Judge = judge_named(name)
    rng = random.Random(19)
    for n in range(8):
        for deviation in ("HIGH", "LOW", "EITHER"):
            ticks = noisy_ticks(rng, ratio=rng.choice([0.5, 1.0, 2.0]), ticks=n)
            verdict = judge.judge(ticks, deviation=deviation, failure_limit=0, final=True)
            assert verdict.outcome in ("pass", "fail")


def test_unknown_judge_and_deviation_are_clear_errors() -> None:
    """A bad judge name or deviation names what is allowed, as a ConfigError."""
    with pytest.raises(UnknownJudgeError) as excinfo:
        judge_named("bayesian")
    assert str(excinfo.value) == "unknown judge 'bayesian': expected one of pipecd, sequential"
    assert isinstance(excinfo.value, ConfigError)
    assert isinstance(excinfo.value, KeyError)
    with pytest.raises(ConfigError, match="unknown deviation 'UP'"):
        judge_named("pipecd").judge([], deviation="UP", failure_limit=0, final=True)  # type: ignore[arg-type]
    assert DEFAULT_JUDGE in JUDGE_NAMES
    assert {judge_named(n).name for n in JUDGE_NAMES} == set(JUDGE_NAMES)
