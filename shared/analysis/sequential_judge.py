"""The `sequential` judge: anytime-valid, with an effect-size threshold.

On ratio samples, a one-sided safe t-test:

- ticks are pooled into batches of k consecutive ticks spanning about `batch_s` (3 min;
  k = 1 for intervals of 2 min or more), and each batch is reduced to one number, the
  bounded relative difference of its means r = (ē − c̄) / (|ē| + |c̄|) (0 when both are
  0), which is tanh(½·log(ē/c̄)) for positive metrics: symmetric, defined when a side is
  0 (an error ratio with no errors), and blind to the metric's unit. This is the
  batch-means method for autocorrelated series: samples *within* a tick are strongly
  correlated (overlapping `rate()` windows, a pod's slow drift) and so are 1-minute
  ticks, while batches minutes apart are nearly independent;
- the null hypothesis is "the experiment is worse by less than `min_effect` (10 %)",
  i.e. ē ≤ (1 + δ)·c̄ for `HIGH`, which is r ≤ θ = δ / (2 + δ) (mirrored for `LOW`);
- after n ≥ 2 batches, with x_i = r_i − θ, t_n = √n·x̄/s is the one-sample t statistic
  and BF_n = `stats.safe_t_bayes_factor(t_n, n, g)` the Bayes factor of a normal prior
  N(0, g) on the standardised effect x̄/σ with a right-Haar prior on σ. Under x̄ = 0
  (effect exactly at the threshold), (BF_n) is a test martingale whatever σ is
  (Lai 1976; Pérez-Ortiz, Lardy, de Heide and Grünwald 2024, "E-statistics, group
  invariance and anytime-valid testing"; Grünwald, de Heide and Koolen 2024, "Safe
  testing"), so by Ville's inequality P(∃n: BF_n ≥ 1/α) ≤ α over *all* looks;
- the metric fails at the first batch where t_n > 0 and BF_n ≥ 1/α (α = 1 %). For a
  true effect below the threshold the data are the boundary's shifted down, which
  lowers every t_n at once, so the one-sided failure probability is still ≤ α; `EITHER`
  runs the `HIGH` and `LOW` tests at α/2 each;
- at `final` (where a last, partial batch counts too) it passes unless that has
  happened. It never passes early: the stage's duration is the soak time asked for;
- the reason ends with the test inverted: the confidence sequence for the ratio of
  the means ē/c̄ = (1 + r)/(1 − r) — every threshold the same test would reject lies
  below its lower bound (above its upper one for `LOW`) — beside 1 + δ, so the line
  fails exactly when the bound is past the threshold.

`sequential` on counts (since version 2) — when the observations carry the counts behind
a ratio of two rates (the service measures them for a query of that shape, see
`shared.analysis.ratio_query`: `rate(errors[1m]) / rate(requests[1m])`), the judge runs
the rate-ratio test of `shared.analysis.rate_ratio` instead of the t-test below: each
tick's events and totals on both sides, conditional binomial likelihood ratios against
ρ₀ = 1 + δ (`LOW`: 1/(1 + δ)), tempered by `dispersion` φ = 1.5 and mixed over a fixed
grid of larger ratios. That is a supermartingale under the null, so Ville's inequality
bounds the false-fail probability by α for any stopping time (the argument is that
module's docstring); no batching is needed (counts in disjoint windows share no data),
so a 2× error-rate regression can fail at the first 5-minute tick. Ticks whose counts
are unusable carry no evidence. The reason is one line a person can check: the pooled
rate ratio with its counts, the anytime confidence sequence for it, and the threshold;
the test fails exactly when the sequence is past the threshold. Everything else —
latency, any other query shape, and records from before the service measured counts —
is judged by the t-test on ratio samples, as in version 1.

Assumptions, stated because the guarantee rests on them: batch statistics are
independent and roughly normal with a constant spread; a heavy-tailed or drifting
series, or batches that still share data (a `rate()` window longer than `batch_s`),
weaken it. `failure_limit` is ignored by `sequential`: α, not a count of failed looks,
bounds its error rate. With unknown spread the evidence a t-test can gather from n
batches is capped at (1 + n·g)^((n−1)/2), so no regression fails before the third
batch; the prior scale g = 100 (standardised effects of about ±10: regressions large
against batch-to-batch noise, the kind worth stopping a deployment for) lets a
decisive one fail at the third or fourth, where a larger g would only help huge
regressions and cost subtle ones. `benchmarks/judge.py` measures all this.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from shared.analysis.rate_ratio import RateRatio, pooled_ratio, usable
from shared.analysis.stats import safe_t_bayes_factor
from shared.analysis.verdict import (
    Deviation,
    Observation,
    Outcome,
    Verdict,
    check_deviation,
    fmt,
)


def relative_difference(experiment: Sequence[float], control: Sequence[float]) -> float | None:
    """(ē − c̄)/(|ē| + |c̄|) of the finite values' means; None when a side has none."""
    e = [v for v in experiment if math.isfinite(v)]
    c = [v for v in control if math.isfinite(v)]
    if not e or not c:
        return None
    e_mean = math.fsum(e) / len(e)
    c_mean = math.fsum(c) / len(c)
    scale = abs(e_mean) + abs(c_mean)
    if scale == 0:
        return 0.0
    return (e_mean - c_mean) / scale


@dataclass(frozen=True)
class _Test:
    """One one-sided safe t-test's state after a prefix of ticks."""

    t: float
    bayes_factor: float


def _ratio_of(r: float) -> float:
    """The ratio of means ē/c̄ whose bounded relative difference is r (positive metrics)."""
    if r >= 1:
        return math.inf
    return (1 + r) / (1 - r)


@lru_cache(maxsize=1024)
def _t_reaching(bar: float, n: int, g: float) -> float | None:
    """The t > 0 at which the safe t-test's Bayes factor from n values reaches `bar`
    (bisection; it rises with t), or None when even t = ∞ does not (too few values)."""
    if safe_t_bayes_factor(math.inf, n, g) < bar:
        return None
    low, high = 0.0, 1.0
    while safe_t_bayes_factor(high, n, g) < bar:
        low, high = high, high * 2
    for _ in range(60):
        middle = (low + high) / 2
        if safe_t_bayes_factor(middle, n, g) >= bar:
            high = middle
        else:
            low = middle
    return high


def _t_statistic(xs: Sequence[float]) -> float:
    n = len(xs)
    mean = math.fsum(xs) / n
    variance = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    if variance == 0:
        if mean > 0:
            return math.inf
        return -math.inf if mean < 0 else 0.0
    return mean / math.sqrt(variance / n)


class SequentialJudge:
    """Anytime-valid: a one-sided safe t-test on per-tick relative differences past a threshold."""

    name: Final = "sequential"
    version: Final = "2"

    def __init__(
        self,
        *,
        alpha: float = 0.01,
        min_effect: float = 0.1,
        prior_scale: float = 100.0,
        batch_s: float = 180.0,
        dispersion: float = 1.5,
    ):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if min_effect < 0:
            raise ValueError(f"min_effect must be ≥ 0, got {min_effect}")
        if prior_scale <= 0:
            raise ValueError(f"prior_scale must be > 0, got {prior_scale}")
        if batch_s < 0:
            raise ValueError(f"batch_s must be ≥ 0, got {batch_s}")
        if dispersion < 1:
            raise ValueError(f"dispersion must be ≥ 1, got {dispersion}")
        self.dispersion = dispersion
        self.batch_s = batch_s
        self.alpha = alpha
        self.min_effect = min_effect
        self.prior_scale = prior_scale
        # ē = (1 + δ)·c̄ in the bounded relative difference.
        self.threshold = min_effect / (2 + min_effect)

    def earliest_failure_s(self, interval_s: float) -> float:
        """When, at the soonest, a comparison checked every `interval_s` can fail: 3 batches.

        The Bayes factor of n batches is capped at (1 + n·g)^((n−1)/2), below 1/α
        for n < 3, so a stage shorter than this can only pass its comparisons.
        """
        k = max(1, round(self.batch_s / interval_s)) if self.batch_s > 0 and interval_s > 0 else 1
        return 3 * k * interval_s

    def judge(
        self,
        observations: Sequence[Observation],
        *,
        deviation: Deviation,
        failure_limit: int,
        final: bool,
    ) -> Verdict:
        """Fail at the first tick whose Bayes factor for "worse than the threshold" reaches 1/α."""
        check_deviation(deviation)
        del failure_limit  # α, not a count of failed looks, bounds the error rate
        if any(observation.counts is not None for observation in observations):
            return self._judge_counts(observations, deviation=deviation, final=final)
        diffs: list[float] = []
        tick_of: list[int] = []  # the observation (1-based) at which each batch was complete
        for r, tick in self._batches(observations, final=final):
            diffs.append(r)
            tick_of.append(tick)
        sides = _SIDES[deviation]
        bar = len(sides) / self.alpha
        last: dict[str, _Test] = {}
        # Every prefix is checked, so the verdict does not depend on how often the judge
        # was called: the test's guarantee is about the first crossing.
        for n in range(2, len(diffs) + 1):
            for side, sign in sides:
                xs = [sign * r - self.threshold for r in diffs[:n]]
                t = _t_statistic(xs)
                test = _Test(t, safe_t_bayes_factor(t, n, self.prior_scale))
                last[side] = test
                if t > 0 and test.bayes_factor >= bar:
                    text, bounds = self._t_sequence(diffs[:n], sides, bar)
                    return Verdict(
                        "fail",
                        f"experiment {side} than control by more than {self.min_effect:.0%} "
                        f"(Bayes factor {fmt(test.bayes_factor)} ≥ {fmt(bar)} after {n} ticks, "
                        f"mean relative difference {fmt(math.fsum(diffs[:n]) / n)}){text}",
                        self._statistics(diffs[:n], last, bar, len(observations))
                        | bounds
                        | {"failed_at_tick": float(tick_of[n - 1])},
                    )
        text, bounds = self._t_sequence(diffs, sides, bar)
        statistics = self._statistics(diffs, last, bar, len(observations)) | bounds
        if final:
            return Verdict(
                "pass",
                f"no evidence after {len(diffs)} ticks that the experiment is "
                f"{' or '.join(side for side, _ in sides)} than control by more than "
                f"{self.min_effect:.0%} (largest Bayes factor now "
                f"{fmt(statistics['bayes_factor'])} < {fmt(bar)}){text}",
                statistics,
            )
        return Verdict(
            "continue",
            f"{len(diffs)} ticks, Bayes factor {fmt(statistics['bayes_factor'])} < "
            f"{fmt(bar)}{text}",
            statistics,
        )

    def _t_sequence(
        self, diffs: Sequence[float], sides: tuple[tuple[str, float], ...], bar: float
    ) -> tuple[str, dict[str, float]]:
        """The t-test's confidence sequence, as text for the reason and as statistics.

        Testing "r ≤ θ'" for every θ' instead of the threshold θ: t(θ') = (r̄ − θ')·√n/s
        falls as θ' rises and the Bayes factor rises with t > 0, so the θ' it rejects are
        those below r̄ − t*·s/√n, t* being where the Bayes factor reaches the bar: a lower
        bound valid at every n as the test is (mirrored for "lower"). In the ratio of the
        means, ē/c̄ = (1 + r)/(1 − r) for positive metrics, against 1 + δ.
        """
        n = len(diffs)
        if n < 2:
            return "", {}
        t_star = _t_reaching(bar, n, self.prior_scale)
        mean = math.fsum(diffs) / n
        spread = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1) / n)
        parts: list[str] = []
        bounds: dict[str, float] = {}
        for _, sign in sides:
            # Without t* the evidence cannot reach the bar yet: no bound (0 or ∞).
            r = -sign if t_star is None else max(-1.0, min(1.0, mean - sign * t_star * spread))
            ratio = _ratio_of(r)
            if sign > 0:
                bounds["lower_bound"] = ratio
                parts.append(f"≥ {fmt(ratio)}×")
            else:
                bounds["upper_bound"] = ratio
                parts.append(f"≤ {fmt(ratio)}×")
        limits = " / ".join(f"{fmt(_ratio_of(sign * self.threshold))}×" for _, sign in sides)
        return (
            f"; {1 - self.alpha:.0%} confidence sequence for the ratio of means "
            f"{' and '.join(parts)}, threshold {limits}",
            bounds,
        )

    def _judge_counts(
        self, observations: Sequence[Observation], *, deviation: Deviation, final: bool
    ) -> Verdict:
        """The rate-ratio test (`shared.analysis.rate_ratio`) on the ticks with usable counts."""
        ticks = [
            (index, observation.counts)
            for index, observation in enumerate(observations, start=1)
            if observation.counts is not None and usable(observation.counts)
        ]
        counts = [c for _, c in ticks]
        sides = _SIDES[deviation]
        bar = len(sides) / self.alpha
        log_threshold = math.log1p(self.min_effect)
        tests = {
            side: RateRatio(sign, sign * log_threshold, math.log(bar), self.dispersion)
            for side, sign in sides
        }
        failed: tuple[int, str] | None = None
        for side, test in tests.items():
            n, _ = test.first_crossing(counts)
            if n is not None and (failed is None or n < failed[0]):
                failed = (n, side)
        used = counts[: failed[0]] if failed else counts
        last_tick = ticks[failed[0] - 1][0] if failed else len(observations)
        statistics: dict[str, float] = {
            "ticks": float(len(observations)),
            "n": float(len(used)),
            "ticks_without_counts": float(
                sum(1 for o in observations[:last_tick] if not usable(o.counts))
            ),
            "alpha": self.alpha,
            "min_effect": self.min_effect,
            "dispersion": self.dispersion,
            "bar": bar,
            "experiment_events": math.fsum(c.experiment_events for c in used),
            "experiment_total": math.fsum(c.experiment_total for c in used),
            "control_events": math.fsum(c.control_events for c in used),
            "control_total": math.fsum(c.control_total for c in used),
            "rate_ratio": pooled_ratio(used),
        }
        bounds: list[str] = []
        for side, test in tests.items():
            log_e = test.first_crossing(used)[1] if used else 0.0
            statistics[f"evidence_{side}"] = math.exp(log_e)
            bound = test.bound(used)
            statistics["lower_bound" if side == "higher" else "upper_bound"] = bound
            bounds.append(f"≥ {fmt(bound)}×" if side == "higher" else f"≤ {fmt(bound)}×")
        statistics["evidence"] = max(statistics[f"evidence_{side}"] for side, _ in sides)
        count = "{:.6g}".format  # counts as people read them: 7200, 61.5
        summary = (
            f"event rate {fmt(statistics['rate_ratio'])}× control's "
            f"({count(statistics['experiment_events'])}/{count(statistics['experiment_total'])} "
            f"vs {count(statistics['control_events'])}/{count(statistics['control_total'])} "
            f"in {len(used)} tick(s)); {1 - self.alpha:.0%} confidence sequence "
            f"{' and '.join(bounds)}"
        )
        limits = " / ".join(f"{fmt(math.exp(sign * log_threshold))}×" for _, sign in sides)
        if failed is not None:
            n, side = failed
            statistics["failed_at_tick"] = float(ticks[n - 1][0])
            return Verdict(
                "fail",
                f"experiment {side} than control by more than {self.min_effect:.0%}: {summary}, "
                f"beyond the threshold {limits} (e-value "
                f"{fmt(statistics[f'evidence_{side}'])} ≥ {fmt(bar)})",
                statistics,
            )
        verdict: Outcome = "pass" if final else "continue"
        lead = "no evidence" if final else "no evidence yet"
        return Verdict(
            verdict,
            f"{lead} that the experiment is {' or '.join(side for side, _ in sides)} than "
            f"control by more than {self.min_effect:.0%}: {summary}, not beyond the threshold "
            f"{limits} (e-value {fmt(statistics['evidence'])} < {fmt(bar)})",
            statistics,
        )

    def _batches(
        self, observations: Sequence[Observation], *, final: bool
    ) -> list[tuple[float, int]]:
        """Each complete batch's relative difference and the tick (1-based) that completed it.

        The service measures tick j at `at` = j·interval (the last one at the duration) and
        passes only ticks with data, so the interval is the smallest spacing seen (the first
        tick's `at` included). A
        batch pools ticks j with the same (j − 1) // k, k = max(1, round(batch_s /
        interval)); it is complete once a tick at or past its end has arrived, and at
        `final` (the last, partial batch).
        """
        if not observations:
            return []
        ats = [observation.at for observation in observations]
        # The final tick is at the stage's duration, which need not be a whole number of
        # intervals: it is numbered (rounding up) but not used to find the interval.
        regular = ats[:-1] if final and len(ats) > 1 else ats
        spacings = [b - a for a, b in itertools.pairwise(regular) if b - a > 0]
        interval = min([a for a in regular[:1] if a > 0] + spacings, default=0.0)
        if self.batch_s > 0 and interval > 0:
            k = max(1, round(self.batch_s / interval))
            numbers = [max(1, math.ceil(at / interval - 1e-6)) for at in ats]
        else:
            k = 1
            numbers = list(range(1, len(observations) + 1))
        out: list[tuple[float, int]] = []
        index = 0
        while index < len(observations):
            batch = (numbers[index] - 1) // k
            end = index
            while end < len(observations) and (numbers[end] - 1) // k == batch:
                end += 1
            # The first observation at or past the batch's last tick completes it.
            completed = next(
                (i + 1 for i in range(index, len(observations)) if numbers[i] >= (batch + 1) * k),
                len(observations) if final else None,
            )
            if completed is None:
                break
            experiment = [v for o in observations[index:end] for v in o.experiment]
            control = [v for o in observations[index:end] for v in o.control]
            r = relative_difference(experiment, control)
            if r is not None:
                out.append((r, completed))
            index = end
        return out

    def _statistics(
        self, diffs: Sequence[float], last: dict[str, _Test], bar: float, ticks: int
    ) -> dict[str, float]:
        n = len(diffs)
        statistics = {
            "ticks": float(ticks),
            "n": float(n),
            "alpha": self.alpha,
            "min_effect": self.min_effect,
            "prior_scale": self.prior_scale,
            "bar": bar,
            "mean_relative_difference": math.fsum(diffs) / n if n else math.nan,
            "bayes_factor": max((test.bayes_factor for test in last.values()), default=1.0),
        }
        for side, test in last.items():
            statistics[f"t_{side}"] = test.t
            statistics[f"bayes_factor_{side}"] = test.bayes_factor
        return statistics


_SIDES: Final[dict[Deviation, tuple[tuple[str, float], ...]]] = {
    "HIGH": (("higher", 1.0),),
    "LOW": (("lower", -1.0),),
    "EITHER": (("higher", 1.0), ("lower", -1.0)),
}
