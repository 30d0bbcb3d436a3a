"""The `pipecd` judge: what PipeCD does.

Read from `pkg/app/piped/executor/analysis/metrics_analyzer.go` (its `run` loop and
`compare`) and the go-moremath Mann-Whitney code it vendors in
`pkg/app/piped/executor/analysis/mannwhitney/` (see `shared.analysis.stats`):

- each tick compares that tick's samples only — the experiment (canary, or this
  deployment for PREVIOUS) against the control (baseline, primary, or the previous
  deployment at the same elapsed time) — with `MannWhitneyUTest(experiment, control, alt)`;
- `alt` per deviation: `HIGH` → `LocationGreater`, `LOW` → `LocationLess`, `EITHER` →
  `LocationDiffers` (two-sided); the tick fails when p ≤ 0.05 (`res.P > alpha` passes);
- all values equal in both samples (`ErrSamplesEqual`) and both samples empty pass the tick
  (PipeCD counts one empty side as a failed tick; here the service has already applied
  `skipOnNoData` to it, and what reaches the judge empty is no evidence);
- every failed tick increments a counter and the metric fails as soon as the counter
  exceeds `failureLimit` (`failureCount > FailureLimit`); it passes when the stage's
  duration ends first. There is no correction for multiple looks: with failureLimit 0 and
  6 ticks a perfectly good canary fails about 1 − 0.95⁶ ≈ 26 % of the time, more when the
  samples within a tick are autocorrelated (they are: overlapping `rate()` windows).

"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

from shared.analysis.stats import Alternative, SamplesEqualError, mann_whitney_u
from shared.analysis.verdict import Deviation, Observation, Verdict, check_deviation, finite, fmt

PIPECD_ALPHA: Final = 0.05
_ALTERNATIVE: Final[dict[Deviation, Alternative]] = {
    "HIGH": "GREATER",
    "LOW": "LESS",
    "EITHER": "EITHER",
}
_DIRECTION: Final[dict[Deviation, str]] = {
    "HIGH": "higher than",
    "LOW": "lower than",
    "EITHER": "different from",
}


@lru_cache(maxsize=65536)
def _pipecd_tick(
    experiment: tuple[float, ...], control: tuple[float, ...], deviation: Deviation
) -> float | None:
    """One tick's p-value, or None when the tick passes without a test (no data, all equal).

    Cached because the service re-judges every earlier tick after each new one.
    """
    experiment, control = finite(experiment), finite(control)
    if not experiment or not control:
        return None
    try:
        return mann_whitney_u(experiment, control, _ALTERNATIVE[deviation]).p
    except SamplesEqualError:
        return None


class PipeCDJudge:
    """PipeCD's judge: a Mann-Whitney U test on each tick's samples, failed ticks counted."""

    name: Final = "pipecd"
    version: Final = "1"

    def judge(
        self,
        observations: Sequence[Observation],
        *,
        deviation: Deviation,
        failure_limit: int,
        final: bool,
    ) -> Verdict:
        """Fail at the first tick where more than `failure_limit` ticks had p ≤ 0.05."""
        check_deviation(deviation)
        failed = 0
        tested = 0
        p = math.nan
        min_p = math.nan
        for index, observation in enumerate(observations):
            tick_p = _pipecd_tick(observation.experiment, observation.control, deviation)
            if tick_p is None:
                continue
            tested += 1
            p = tick_p
            min_p = tick_p if math.isnan(min_p) else min(min_p, tick_p)
            if tick_p <= PIPECD_ALPHA:
                failed += 1
                if failed > failure_limit:
                    return Verdict(
                        "fail",
                        f"experiment {_DIRECTION[deviation]} control (Mann-Whitney "
                        f"p={fmt(tick_p)} ≤ {PIPECD_ALPHA}) on {failed} of {index + 1} ticks "
                        f"> failureLimit {failure_limit}",
                        self._statistics(
                            len(observations), tested, failed, failure_limit, p, min_p, index + 1
                        ),
                    )
        statistics = self._statistics(
            len(observations), tested, failed, failure_limit, p, min_p, None
        )
        if final:
            return Verdict(
                "pass",
                f"{failed} of {len(observations)} ticks significant (p ≤ {PIPECD_ALPHA}), "
                f"within failureLimit {failure_limit}",
                statistics,
            )
        return Verdict(
            "continue",
            f"{failed} of {len(observations)} ticks significant so far "
            f"(last p={fmt(p)}), failureLimit {failure_limit}",
            statistics,
        )

    @staticmethod
    def _statistics(
        ticks: int,
        tested: int,
        failed: int,
        failure_limit: int,
        p: float,
        min_p: float,
        failed_at_tick: int | None,
    ) -> dict[str, float]:
        statistics = {
            "ticks": float(ticks),
            "tested_ticks": float(tested),
            "failed_ticks": float(failed),
            "failure_limit": float(failure_limit),
            "alpha": PIPECD_ALPHA,
            "last_p": p,
            "min_p": min_p,
        }
        if failed_at_tick is not None:
            statistics["failed_at_tick"] = float(failed_at_tick)
        return statistics
