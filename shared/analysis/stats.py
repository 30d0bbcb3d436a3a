"""The judges' statistics: PipeCD's Mann-Whitney U test and the safe t-test's Bayes factor.

Standard library only, and deterministic: every function does the same floating-point
operations in the same order for the same input, so a verdict recomputed from recorded
samples is identical bit for bit.

`mann_whitney_u` reproduces `MannWhitneyUTest` of `github.com/aclements/go-moremath/stats`
as vendored by PipeCD (`pkg/app/piped/executor/analysis/mannwhitney/mannwhitney.go`,
`udist.go`, `normaldist.go`, `mathx.go`), including its choices and quirks:

- U is the experiment's ("first sample's") statistic, ties counted as one half;
- the exact distribution is used when neither sample has more than 50 values and there
  are no ties, or neither has more than 25 and there are ties (Klotz 1966, Cheung and
  Klotz 1997); otherwise a normal approximation with tie and continuity corrections;
- `LESS` is P(U ≤ U₁), `GREATER` is 1 − CDF(U₁ − 1), which with ties (U in half steps)
  is P(U ≥ U₁ − ½): slightly larger than the textbook P(U ≥ U₁). Kept, for fidelity;
- `EITHER` is 1 when U₁ = U₂ and 2·CDF(min(U₁, U₂)) otherwise, not capped at 1 (with
  ties it can exceed 1; harmless against a 0.05 bar, kept for fidelity);
- every value equal in both samples raises `SamplesEqualError`; an empty sample
  raises `ValueError`.

The no-ties exact distribution uses go-moremath's floating-point recurrence (Mann and
Whitney 1947) operation for operation; the distribution with ties is counted here with
exact integers rather than go-moremath's floats (whose binomials above 20 come from
`lgamma`), so the two agree to rounding.

`safe_t_bayes_factor` is the Bayes factor of the one-sample t-test with a right-Haar
prior on the scale and a normal prior on the standardised effect; see its docstring and
`shared.analysis.judges.SequentialJudge`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

from shared.errors import SlipwayError

Alternative = Literal["LESS", "GREATER", "EITHER"]

# go-moremath's MannWhitneyExactLimit and MannWhitneyTiesExactLimit.
EXACT_LIMIT: Final = 50
TIES_EXACT_LIMIT: Final = 25


class SamplesEqualError(SlipwayError, ValueError):
    """All values of both samples are equal: no test (go-moremath's ErrSamplesEqual)."""


@dataclass(frozen=True)
class MannWhitneyResult:
    """U of the first sample (ties as ½), its p-value, and whether it is exact."""

    u: float
    p: float
    exact: bool


def normal_cdf(x: float) -> float:
    """Φ(x), computed as go-moremath's `StdNormal.CDF` does."""
    return math.erfc(-x / math.sqrt(2)) / 2


def mann_whitney_u(
    x1: Sequence[float], x2: Sequence[float], alternative: Alternative
) -> MannWhitneyResult:
    """Mann-Whitney U test of x1 against x2; `GREATER` means "x1 tends to be larger"."""
    n1, n2 = len(x1), len(x2)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U test needs at least one value in each sample")
    u1, ties = _u_statistic(sorted(x1), sorted(x2))
    u2 = float(n1 * n2) - u1
    has_ties = any(t > 1 for t in ties)
    limit = TIES_EXACT_LIMIT if has_ties else EXACT_LIMIT
    if n1 <= limit and n2 <= limit:
        if len(ties) == 1:
            raise SamplesEqualError("all samples are equal")
        cdf = _UDistribution(n1, n2, ties).cdf
        if alternative == "EITHER":
            p = 1.0 if u1 == u2 else cdf(min(u1, u2)) * 2
        elif alternative == "LESS":
            p = cdf(u1)
        else:
            p = 1 - cdf(u1 - 1)
        return MannWhitneyResult(u1, p, exact=True)
    return MannWhitneyResult(u1, _normal_approximation(n1, n2, u1, ties, alternative), exact=False)


def _u_statistic(x1: list[float], x2: list[float]) -> tuple[float, tuple[int, ...]]:
    """U₁ by mid-ranks over the labelled merge, and the tie vector (group sizes in rank order)."""
    merged: list[tuple[float, int]] = []
    i = j = 0
    # A tie between the samples puts x2's value first, as go-moremath's labeledMerge does;
    # the mid-rank makes the order within a tie irrelevant to U.
    while i < len(x1) and j < len(x2):
        if x1[i] < x2[j]:
            merged.append((x1[i], 1))
            i += 1
        else:
            merged.append((x2[j], 2))
            j += 1
    merged.extend((v, 1) for v in x1[i:])
    merged.extend((v, 2) for v in x2[j:])
    r1 = 0.0
    ties: list[int] = []
    k = 0
    while k < len(merged):
        first_rank, from_x1, value = k + 1, 0, merged[k][0]
        while k < len(merged) and merged[k][0] == value:
            if merged[k][1] == 1:
                from_x1 += 1
            k += 1
        if from_x1:
            r1 += float(k + first_rank) / 2 * float(from_x1)
        ties.append(k - first_rank + 1)
    n1 = len(x1)
    return r1 - float(n1 * (n1 + 1)) / 2, tuple(ties)


def _normal_approximation(
    n1: int, n2: int, u1: float, ties: tuple[int, ...], alternative: Alternative
) -> float:
    t = float(sum(tie * tie * tie - tie for tie in ties))
    n = float(n1 + n2)
    mu = float(n1 * n2) / 2
    sigma = math.sqrt(float(n1 * n2) * ((n + 1) - t / (n * (n - 1))) / 12)
    if sigma == 0:
        raise SamplesEqualError("all samples are equal")
    numer = u1 - mu
    if alternative == "EITHER":
        numer -= math.copysign(0.5, numer) if numer != 0 else 0.0
    elif alternative == "LESS":
        numer += 0.5
    else:
        numer -= 0.5
    z = numer / sigma
    if alternative == "EITHER":
        return 2 * min(normal_cdf(z), 1 - normal_cdf(z))
    if alternative == "LESS":
        return normal_cdf(z)
    return 1 - normal_cdf(z)


@dataclass(frozen=True)
class _UDistribution:
    """The null distribution of U for sample sizes n1, n2 and a tie vector."""

    n1: int
    n2: int
    ties: tuple[int, ...]

    def cdf(self, u: float) -> float:
        if u < 0:
            return 0.0
        if u >= float(self.n1 * self.n2):
            return 1.0
        if any(t > 1 for t in self.ties):
            counts = _tied_counts(self.n1, self.ties)
            # go-moremath truncates 2U to an integer; U ≥ 0 here, so that is a floor.
            limit = int(2 * u)
            below = 0
            for two_u, count in counts:
                if two_u <= limit:
                    below += count
            return below / math.comb(self.n1 + self.n2, self.n1)
        ui = math.floor(u)
        # Symmetric about n1·n2/2: sum whichever tail is shorter, as go-moremath does.
        flip = ui >= (self.n1 * self.n2 + 1) // 2
        if flip:
            ui = self.n1 * self.n2 - ui - 1
        pdfs = _no_ties_pmf(self.n1, self.n2, ui)
        p = 0.0
        for pdf in pdfs[: ui + 1]:
            p += pdf
        return 1 - p if flip else p


@lru_cache(maxsize=4096)
def _no_ties_pmf(n1: int, n2: int, u_max: int) -> tuple[float, ...]:
    """P(U = u) for u = 0…u_max without ties: go-moremath's `UDist.p`, operation for operation.

    The recurrence p_{n,m}(U) = (n·p_{n-1,m}(U−m) + m·p_{n,m-1}(U)) / (n+m) is evaluated
    in place, one row of the (n, m) plane at a time, in go-moremath's order, so the
    floating-point result is the same.
    """
    small, large = (n2, n1) if n1 > n2 else (n1, n2)
    memo = [[0.0] * (u_max + 1) for _ in range(small + 1)]
    for m in range(large + 1):
        memo[0][0] = 1.0
        for n in range(1, min(small, m) + 1):
            lp = memo[n - 1]
            rp = memo[n] if n <= m - 1 else memo[m - 1]
            out = memo[n]
            n_plus_m = float(n + m)
            for u in range(min(n * m, u_max), -1, -1):
                left = float(n) * lp[u - m] if u - m >= 0 else 0.0
                right = float(m) * rp[u]
                out[u] = (left + right) / n_plus_m
    return tuple(memo[small])


@lru_cache(maxsize=1024)
def _tied_counts(n1: int, ties: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """(2U, number of ways) for every arrangement of n1 first-sample values over the tie groups.

    Walks the tie groups in rank order; a group of size t receiving r first-sample values
    adds r·(second-sample values ranked below it) + r·(t − r)/2 to U, in C(t, r) ways.
    """
    total = sum(ties)
    # states[j] maps 2U to the number of ways of placing j first-sample values so far.
    states: list[dict[int, int]] = [{} for _ in range(n1 + 1)]
    states[0][0] = 1
    seen = 0
    for t in ties:
        remaining_after = total - seen - t
        nxt: list[dict[int, int]] = [{} for _ in range(n1 + 1)]
        for j, by_u in enumerate(states):
            if not by_u:
                continue
            below = seen - j  # second-sample values ranked below this group
            for r in range(min(t, n1 - j) + 1):
                if n1 - j - r > remaining_after:
                    continue
                ways = math.comb(t, r)
                step = 2 * r * below + r * (t - r)
                target = nxt[j + r]
                for two_u, count in by_u.items():
                    key = two_u + step
                    target[key] = target.get(key, 0) + count * ways
        states = nxt
        seen += t
    return tuple(sorted(states[n1].items()))


def safe_t_bayes_factor(t: float, n: int, g: float) -> float:
    """Bayes factor of "standardised mean δ ~ N(0, g)" against "δ = 0" from t on n values.

    With the right-Haar prior 1/σ on the unknown scale this is the likelihood ratio of
    the scale-invariant part of the data, a nonnegative martingale with mean 1 under
    δ = 0 (Lai 1976; Grünwald, de Heide and Koolen 2024, "Safe testing"; Pérez-Ortiz,
    Lardy, de Heide and Grünwald 2024, "E-statistics, group invariance and anytime-valid
    testing"), so by Ville's inequality P(sup_n BF_n ≥ 1/α) ≤ α. Closed form (Rouder et
    al. 2009, normal effect prior), ν = n − 1:

        BF = (1 + n·g)^(−1/2) · [(1 + t²/(ν(1 + n·g))) / (1 + t²/ν)]^(−(ν+1)/2)

    `t = ±inf` (no spread at all) gives the limit (1 + n·g)^(ν/2). Needs n ≥ 2.
    """
    if n < 2:
        raise ValueError("the t-test's Bayes factor needs at least two values")
    nu = float(n - 1)
    ng1 = 1 + n * g
    if math.isinf(t):
        return math.exp(nu / 2 * math.log(ng1))
    t2 = t * t
    log_ratio = math.log1p(t2 / (nu * ng1)) - math.log1p(t2 / nu)
    return math.exp(-0.5 * math.log(ng1) - (nu + 1) / 2 * log_ratio)
