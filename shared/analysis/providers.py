"""Where analysis measurements come from: Prometheus' `query_range` and plain HTTP checks.

The I/O edge of the analysis service. Each call returns what the other side
said, raw — Prometheus' sample values as the text it sent, an HTTP response's
code and body — or a `ProviderError` whose text says what went wrong (refused,
timed out, an error from Prometheus, a body that is not its API's JSON). It
never judges: the recorded raw answer is what the verdicts are computed from.
Bodies are read up to a cap, never whole; the sessions it is given obey the
egress rule (`shared.egress`), whose refusals it names.

Each call is a client span, a child of the analysis tick that made it, so a
trace shows every query, its answer's size or status, and what went wrong.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from shared.answers import read_up_to
from shared.config.control import AnalysisProvider
from shared.egress import EgressRefused
from shared.errors import ConfigError, SlipwayError

__all__ = [
    "BODY_LIMIT",
    "ERROR_LIMIT",
    "EXCERPT_LIMIT",
    "HttpAnswer",
    "HttpChecker",
    "PrometheusProvider",
    "ProviderError",
    "Series",
    "excerpt",
    "step_for",
]

_tracer = trace.get_tracer("slipway.analysis.providers")

BODY_LIMIT: Final = 4096
"""How much of an HTTP check's response body is read (and matched against `expectedResponse`)."""

EXCERPT_LIMIT: Final = 256
"""How much of an HTTP check's body is recorded (`AnalysisMeasured.values`): the log keeps
everything forever, so a target may not fill it."""

MAX_SAMPLES: Final = 4000
"""Most samples one measurement records (`AnalysisMeasured.values`): an event stays far
under the store's size cap, so a larger answer is an error naming its size, not cut."""

PROMETHEUS_BODY_LIMIT: Final = 8 * 1024 * 1024
"""A `query_range` answer larger than this is an error, not something to hold in memory."""


DEFAULT_TIMEOUT_S: Final = 30.0
"""A query's timeout when its check sets none (PipeCD's default)."""


ERROR_LIMIT: Final = 500
"""The longest error text recorded: a provider's own error message is quoted, and it may be
as long as its answer."""


class ProviderError(SlipwayError):
    """The provider did not answer usefully; the text says why (for the stage log and the event).

    Capped at `ERROR_LIMIT` characters, whatever the provider sent.
    """

    def __init__(self, message: str) -> None:
        if len(message) > ERROR_LIMIT:
            message = message[: ERROR_LIMIT - 1] + "…"
        super().__init__(message)


@dataclass(frozen=True)
class Series:
    """The samples of a `query_range`: every series' points, series after series, as sent."""

    timestamps: tuple[float, ...]
    values: tuple[str, ...]


def step_for(interval_s: float) -> float:
    """The `query_range` step for a tick of `interval_s`: about ten points a window (PipeCD's
    queries are usually `rate(...[1m])` over 1–5 min intervals), never below Prometheus'
    1 s scrape granularity, never above a minute."""
    return max(1.0, min(60.0, round(interval_s / 10.0)))


class PrometheusProvider:
    """A Prometheus server's HTTP API, with basic auth when the control config has it."""

    def __init__(
        self,
        name: str,
        address: str,
        session: aiohttp.ClientSession,
        *,
        username: str = "",
        password: str = "",
    ) -> None:
        if not address.startswith(("http://", "https://")):
            raise ConfigError(
                f"analysis provider {name!r}: address {address!r} must be an http(s) URL"
            )
        self.name = name
        self.address = address.rstrip("/")
        self.session = session
        # The header itself: aiohttp's BasicAuth helper is deprecated in recent versions.
        self.headers: dict[str, str] = {}
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"

    @classmethod
    def from_config(
        cls, provider: AnalysisProvider, session: aiohttp.ClientSession
    ) -> PrometheusProvider:
        """From the control config's `analysisProviders` entry; reads its credential files."""
        config = provider.config
        if not config.address:
            raise ConfigError(f"analysis provider {provider.name!r}: config.address is required")
        username = _read_secret(provider.name, "usernameFile", config.username_file)
        password = _read_secret(provider.name, "passwordFile", config.password_file)
        return cls(provider.name, config.address, session, username=username, password=password)

    async def query_range(
        self, query: str, *, start: float, end: float, step: float, timeout_s: float
    ) -> Series:
        """The series `query` gives over [start, end] every `step` s (Prometheus' query_range)."""
        timeout_s = timeout_s if timeout_s > 0 else DEFAULT_TIMEOUT_S
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        url = f"{self.address}/api/v1/query_range"
        attributes: dict[str, str | float] = {
            "slipway.provider": self.name,
            "server.address": self.address,
            "db.system": "prometheus",
            "db.query.text": query,
            "slipway.query.start": start,
            "slipway.query.end": end,
            "slipway.query.step_s": step,
        }
        with _tracer.start_as_current_span(
            "prometheus query_range", kind=trace.SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                async with asyncio.timeout(timeout_s):
                    async with self.session.get(
                        url, params=params, headers=self.headers
                    ) as response:
                        raw = await read_up_to(response, PROMETHEUS_BODY_LIMIT + 1)
                        status = response.status
                if len(raw) > PROMETHEUS_BODY_LIMIT:
                    raise ProviderError(
                        f"Prometheus {self.name} answered more than "
                        f"{PROMETHEUS_BODY_LIMIT // (1024 * 1024)} MiB; narrow the query"
                    )
                text = raw.decode("utf-8", "replace")
                span.set_attribute("http.response.status_code", status)
                series = _parse_matrix(self.name, status, text)
            except TimeoutError as exc:
                error = ProviderError(f"Prometheus {self.name} timed out after {timeout_s:g} s")
                raise _failed(span, error) from exc
            except aiohttp.ClientError as exc:
                refused = _refusal(exc)
                error = ProviderError(
                    f"Prometheus {self.name}: {refused}"
                    if refused
                    else f"Prometheus {self.name} unreachable: {exc}"
                )
                raise _failed(span, error) from exc
            except ProviderError as exc:
                raise _failed(span, exc) from None
            span.set_attribute("slipway.samples", len(series.values))
            return series


def _refusal(exc: aiohttp.ClientError) -> str | None:
    """The egress rule's reason, when that is why the connection was not made."""
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else None
    return str(cause) if isinstance(cause, EgressRefused) else None


def excerpt(body: str, expected: str = "") -> str:
    """What of an HTTP check's body is recorded: `EXCERPT_LIMIT` characters, around the
    expected response when the body has it (so the verdict, judged from the record, stands)."""
    limit = max(EXCERPT_LIMIT, len(expected))
    if len(body) <= limit:
        return body
    at = body.find(expected) if expected else -1
    start = 0 if at < 0 else max(0, min(at - (limit - len(expected)) // 2, len(body) - limit))
    return body[start : start + limit]


def _failed(span: trace.Span, error: ProviderError) -> ProviderError:
    """Mark `span` failed with the text the stage log gets (not as an unexpected exception)."""
    span.set_status(Status(StatusCode.ERROR, str(error)))
    return error


def _parse_matrix(name: str, status: int, text: str) -> Series:
    try:
        body: Any = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        raise ProviderError(
            f"Prometheus {name} answered HTTP {status} with a body that is not JSON: {text[:200]!r}"
        ) from None
    if not isinstance(body, dict):
        raise ProviderError(f"Prometheus {name} answered HTTP {status} with {text[:200]!r}")
    if body.get("status") != "success":
        raise ProviderError(
            f"Prometheus {name} answered HTTP {status}: "
            f"{body.get('errorType', 'error')}: {body.get('error', text[:200])}"
        )
    data = body.get("data") or {}
    result = data.get("result") or []
    timestamps: list[float] = []
    values: list[str] = []
    try:
        if data.get("resultType") == "matrix":
            for series in result:
                for ts, value in series.get("values") or []:
                    timestamps.append(float(ts))
                    values.append(str(value))
        elif data.get("resultType") == "vector":
            for series in result:
                ts, value = series["value"]
                timestamps.append(float(ts))
                values.append(str(value))
        elif data.get("resultType") == "scalar":
            ts, value = result
            timestamps.append(float(ts))
            values.append(str(value))
        else:
            kind = data.get("resultType")
            raise ProviderError(f"Prometheus {name}: unexpected result type {kind!r}")
    except (TypeError, ValueError, KeyError) as exc:
        raise ProviderError(f"Prometheus {name}: malformed result: {exc}") from exc
    if len(values) > MAX_SAMPLES:
        # Not cut: a verdict judged from some of the samples would not be the query's.
        raise ProviderError(
            f"Prometheus {name} answered {len(values)} samples, more than the {MAX_SAMPLES} "
            "a measurement records: narrow the query or widen its step"
        )
    return Series(tuple(timestamps), tuple(values))


def _read_secret(provider: str, field: str, path: str) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"analysis provider {provider!r}: config.{field} {path!r} cannot be read: {exc}"
        ) from exc


@dataclass(frozen=True)
class HttpAnswer:
    """What an HTTP check's endpoint answered: its status and the start of its body."""

    status: int
    body: str  # the first BODY_LIMIT characters


class HttpChecker:
    """Sends an HTTP check's request and returns the answer (or a `ProviderError`).

    Redirects are answers, not followed (a 3xx is what the check judges); the
    session's egress rule refuses non-public targets before connecting."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        timeout_s: float,
    ) -> HttpAnswer:
        """Send one request; the answer, or `ProviderError` when none came."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        attributes = {"http.request.method": method, "url.full": url}
        with _tracer.start_as_current_span(
            f"http check {method}", kind=trace.SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                async with asyncio.timeout(timeout_s):
                    async with self.session.request(
                        method, url, headers=pairs, allow_redirects=False
                    ) as response:
                        raw = await read_up_to(response, BODY_LIMIT)
                        span.set_attribute("http.response.status_code", response.status)
                        return HttpAnswer(response.status, raw.decode("utf-8", "replace"))
            except TimeoutError as exc:
                error = ProviderError(f"{method} {url} timed out after {timeout_s:g} s")
                raise _failed(span, error) from exc
            except aiohttp.ClientError as exc:
                refused = _refusal(exc)
                error = ProviderError(
                    f"{method} {url}: {refused}" if refused else f"{method} {url} failed: {exc}"
                )
                raise _failed(span, error) from exc
