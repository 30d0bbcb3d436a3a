"""Ratio queries: recognising `rate(events[w]) / rate(total[w])` and asking for its counts.

A comparison whose query is a ratio of two counters' rates — the error-rate shape,
`sum(rate(errors_total{…}[1m])) / sum(rate(requests_total{…}[1m]))` — is judged far more
sharply from the counts behind it than from its ratio samples (the rate-ratio test,
`shared.analysis.rate_ratio`). For such a query `count_queries` gives the two queries
that ask Prometheus for those counts since the previous tick: the same expressions with
each `rate(x[w])` turned into `increase(x[<seconds>s])`. The analysis service runs
them at the tick's end next to the query itself and records their answers under the
roles in `COUNT_ROLES`, so rejudging needs nothing but the log.

The shape, checked on the text (the query as written or as rendered):

- exactly one `/` outside brackets, braces, parentheses and quotes (so `A / B * 100`,
  `A / B > 0.01` or a ratio of ratios is not it);
- each side has exactly one `rate(` (not `irate(`), over a plain range `[w]` (not a
  subquery `[w:step]`), and nothing `offset`;
- the numerator's metric is not a `_sum` or `_bucket` series: `rate(latency_sum) /
  rate(latency_count)` is a mean, not a share of events, and is judged on its samples.

Anything else returns None and the check is judged on its ratio samples as before.
A count that does not behave like one (events above the total, a negative increase
after a counter reset Prometheus could not see) makes that tick carry no evidence.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["COUNT_ROLES", "count_queries"]

COUNT_ROLES: Final = {
    "experiment": ("experiment_events", "experiment_total"),
    "control": ("control_events", "control_total"),
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


def _as_increase(side: str, window_s: int) -> str | None:
    """`side` with its one `rate(x[w])` as `increase(x[<window_s>s])`, or None."""
    rates = list(_RATE.finditer(side))
    if len(rates) != 1 or re.search(r"\boffset\b", side) or "@" in side:
        return None
    ranges = list(_RANGE.finditer(side))
    if len(ranges) != 1 or ranges[0].start() < rates[0].end():
        return None
    rate, window = rates[0], ranges[0]
    return (
        side[: rate.start()]
        + "increase("
        + side[rate.end() : window.start()]
        + f"[{window_s}s]"
        + side[window.end() :]
    )


def count_queries(query: str, window_s: float) -> tuple[str, str] | None:
    """(events query, total query) over the `window_s` seconds before the evaluation time,
    when `query` is a ratio of two rates; None otherwise."""
    top = _top_level(query)
    if top is None or window_s < 1:
        return None
    operators = [m.start() for m in _OPERATOR.finditer(top)]
    if len(operators) != 1 or top[operators[0]] != "/":
        return None  # `A / B * 100`, `A / B > 0.01`, `A / B / C`, `A and B`: not just a ratio
    at = operators[0]
    numerator, denominator = query[:at].strip(), query[at + 1 :].strip()
    if _NOT_COUNTS.search(numerator):
        return None
    window = round(window_s)
    events = _as_increase(numerator, window)
    total = _as_increase(denominator, window)
    if events is None or total is None:
        return None
    return events, total
