"""Ratio queries: recognising `rate(events[w]) / rate(total[w])` and asking for its counts.

A comparison whose query is a ratio of two counters' rates — the error-rate shape,
`sum(rate(errors_total{…}[1m])) / sum(rate(requests_total{…}[1m]))` — is judged far more
sharply from the counts behind it than from its ratio samples (the rate-ratio test,
`shared.analysis.rate_ratio`). For such a query `count_queries` gives the two queries
whose answers give those counts: the same expressions with each `rate(x[w])` turned
into the plain counter `x` (`sum(errors_total{…})`). The analysis service asks for each
at two instants, the previous tick's time and this tick's (a `query_range` whose step is
the time between them), and records the answers under the roles in `COUNT_ROLES`, so
rejudging needs nothing but the log. A tick's count is the counters' growth between the
two instants (`shared.analysis.strategies`): exact integers, and consecutive ticks share
their boundary instant, so their counts neither overlap nor leave gaps — which the
rate-ratio test's guarantee needs, and `increase()` (extrapolated to the window's edges,
a scrape interval's worth too large on short windows) would not give.

The shape, checked on the text (the query as written or as rendered):

- exactly one `/` outside brackets, braces, parentheses and quotes (so `A / B * 100`,
  `A / B > 0.01` or a ratio of ratios is not it);
- each side has exactly one `rate(` (not `irate(`), over a plain range `[w]` (not a
  subquery `[w:step]`), and nothing `offset`;
- the numerator's metric is not a `_sum` or `_bucket` series: `rate(latency_sum) /
  rate(latency_count)` is a mean, not a share of events, and is judged on its samples.

Anything else returns None and the check is judged on its ratio samples as before.
A count that does not behave like one (events above the total, a negative difference
after a counter reset) makes that tick carry no evidence; a series first seen between
the two instants counts from zero (a new pod's counters start there).
"""

from __future__ import annotations

import re
from typing import Final

from shared.events.vocabulary import SampleRole

__all__ = ["COUNT_ROLES", "count_queries"]

COUNT_ROLES: Final[dict[str, tuple[SampleRole, SampleRole]]] = {
    SampleRole.EXPERIMENT: (SampleRole.EXPERIMENT_EVENTS, SampleRole.EXPERIMENT_TOTAL),
    SampleRole.CONTROL: (SampleRole.CONTROL_EVENTS, SampleRole.CONTROL_TOTAL),
}
"""The `AnalysisMeasured.role`s of the counts behind each side's ratio: (events, total)."""

_RATE: Final = re.compile(r"(?<![A-Za-z0-9_])rate\s*\(")
_RANGE: Final = re.compile(r"\[\s*([0-9]+[smhdwy])+\s*\]")
_NOT_COUNTS: Final = re.compile(r"(_sum|_bucket)\s*(\{|\[)")
_OPEN: Final = {"(": ")", "[": "]", "{": "}"}
_OPERATOR: Final = re.compile(r"[-+*/%^<>=!]|\b(?:and|or|unless|atan2)\b")


def _top_level(query: str) -> str | None:
    """`query` with everything inside brackets, braces, parentheses and quotes blanked
    (comments dropped), so operators at the top level can be found; None when unbalanced."""
    depth = 0
    quote = ""
    out = []
    i = 0
    while i < len(query):
        ch = query[i]
        top = depth == 0 and not quote
        if quote:
            if ch == "\\":
                out.append("  ")
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif ch == "#":  # a PromQL comment runs to the end of the line
            end = query.find("\n", i)
            end = len(query) if end < 0 else end
            out.append(" " * (end - i))  # positions in the answer stay the query's
            i = end
            continue
        out.append(ch if top and depth == 0 and not quote else " ")
        i += 1
    return "".join(out) if depth == 0 and not quote else None


def _closing(text: str, opening: int) -> int | None:
    """The index of the parenthesis closing the one at `opening` (quotes skipped)."""
    depth = 0
    quote = ""
    i = opening
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _as_counter(side: str) -> str | None:
    """`side` with its one `rate(x[w])` as the plain counter `x`, or None."""
    rates = list(_RATE.finditer(side))
    if len(rates) != 1 or re.search(r"\boffset\b", side) or "@" in side:
        return None
    rate = rates[0]
    close = _closing(side, rate.end() - 1)
    ranges = list(_RANGE.finditer(side))
    if close is None or len(ranges) != 1:
        return None
    window = ranges[0]
    if not rate.end() <= window.start() < window.end() <= close:
        return None
    return (
        side[: rate.start()]
        + side[rate.end() : window.start()]
        + side[window.end() : close]
        + side[close + 1 :]
    )


def count_queries(query: str) -> tuple[str, str] | None:
    """(events query, total query) — the counters inside the ratio's two rates — when
    `query` is a ratio of two rates; None otherwise."""
    top = _top_level(query)
    if top is None:
        return None
    operators = [m.start() for m in _OPERATOR.finditer(top)]
    if len(operators) != 1 or top[operators[0]] != "/":
        return None  # `A / B * 100`, `A / B > 0.01`, `A / B / C`, `A and B`: not just a ratio
    at = operators[0]
    numerator, denominator = query[:at].strip(), query[at + 1 :].strip()
    if _NOT_COUNTS.search(numerator):
        return None
    events = _as_counter(numerator)
    total = _as_counter(denominator)
    if events is None or total is None:
        return None
    return events, total
