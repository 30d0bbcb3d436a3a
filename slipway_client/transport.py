"""The API client's transport: one HTTP exchange with the Slipway API, stdlib only.

Failures are mapped into the error tree at this boundary:

```
SlipwayError
├── ApiError          the API answered with an error: status, code, message, field
├── Unavailable
│   └── ApiUnreachable  no answer at all (refused, timed out, DNS): names the URL
└── ConfigError       the base URL itself is unusable
```

The base URL comes from the caller, else `SLIPWAY_API_URL`, else
`http://127.0.0.1:8080`; the API key from the caller, else `SLIPWAY_API_KEY`
(sent as `Authorization: Bearer <key>`). Answers are decoded JSON objects, each
read up to a cap (an answer, an event line, an error body): a server that
never stops sending is an error, not all memory. The calls themselves, one
method per route, are `slipway_client.api`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from shared.errors import ConfigError, SlipwayError, Unavailable

__all__ = [
    "API_KEY_ENV",
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "MAX_ANSWER_BYTES",
    "MAX_EVENT_LINE_BYTES",
    "ApiError",
    "ApiUnreachable",
    "JsonObject",
    "Transport",
    "api_key",
    "api_url",
]

API_URL_ENV: Final = "SLIPWAY_API_URL"
API_KEY_ENV: Final = "SLIPWAY_API_KEY"
DEFAULT_API_URL: Final = "http://127.0.0.1:8080"
_PREFIX: Final = "/api/v1"

JsonObject = dict[str, Any]

MAX_ANSWER_BYTES: Final = 256 * 1024 * 1024
"""The largest answer read (a page of 1000 events at most, each capped at 512 KiB when
appended, is rarely a fraction of it); a larger one is an error, never read whole."""
MAX_EVENT_LINE_BYTES: Final = 1024 * 1024
"""The longest line of a server-sent event stream read (a log line is at most 4 KiB)."""
MAX_ERROR_BYTES: Final = 64 * 1024
"""How much of an error answer is read (to find the API's error object in it)."""


class ApiError(SlipwayError):
    """The API refused or failed a request; `code` and `field` come from its error body."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        self.status = status
        self.code = code
        self.field = field
        super().__init__(message)


class ApiUnreachable(Unavailable):
    """Nothing answered at the API's URL."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"cannot reach the Slipway API at {url}: {reason}")


def api_url(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The base URL to use: `explicit`, else `$SLIPWAY_API_URL`, else the default."""
    environ = os.environ if env is None else env
    return explicit or environ.get(API_URL_ENV) or DEFAULT_API_URL


def api_key(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The API key to send: `explicit`, else `$SLIPWAY_API_KEY`, else none."""
    environ = os.environ if env is None else env
    return explicit or environ.get(API_KEY_ENV) or None


class Transport:
    """Sends requests to the API at `base_url` (scheme, host and port; the `/api/v1` prefix
    is added), with the key if any; `slipway_client.ApiClient` adds a method per route."""

    def __init__(
        self,
        base_url: str,
        *,
        key: str | None = None,
        timeout_s: float = 30.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"API URL {base_url!r} must look like http://host:port (from --api-url or "
                f"${API_URL_ENV})"
            )
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: JsonObject | None = None,
    ) -> JsonObject:
        """Send one request; the decoded JSON object of a 2xx answer, else `ApiError`."""
        url = self._url(path, query)
        data = None if body is None else json.dumps(body).encode()
        headers = self._headers("application/json")
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - the scheme is checked in __init__
        with (
            self._errors(),
            urllib.request.urlopen(request, timeout=self.timeout_s) as reply,  # noqa: S310 - as above
        ):
            return _decode_object(_read_capped(reply, self.max_answer_bytes), reply.status)
        raise AssertionError("unreachable: _errors re-raises")

    def server_sent_events(
        self, path: str, *, query: Sequence[tuple[str, str]] = ()
    ) -> Iterator[tuple[str, JsonObject]]:
        """`(event, data)` for each server-sent event of a GET, until the server ends it.

        The read timeout applies between events; the API's follow sends lines as
        they come and checks for the end twice a second, so silence means trouble.
        """
        url = self._url(path, query)
        request = urllib.request.Request(url, headers=self._headers("text/event-stream"))  # noqa: S310 - the scheme is checked in __init__
        with (
            self._errors(),
            urllib.request.urlopen(request, timeout=self.timeout_s) as reply,  # noqa: S310 - as above
        ):
            event, data = "message", b""
            # By line, each capped: a line that never ends is an error, not all memory.
            while raw := reply.readline(MAX_EVENT_LINE_BYTES + 1):
                if len(raw) > MAX_EVENT_LINE_BYTES:
                    raise ApiError(
                        reply.status,
                        "answer_too_large",
                        f"the API sent an event line over {MAX_EVENT_LINE_BYTES} bytes",
                    )
                line = raw.rstrip(b"\r\n")
                if not line:
                    if data:
                        yield event, _decode_object(data, reply.status)
                    event, data = "message", b""
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    data += line[5:].strip()
                    if len(data) > MAX_EVENT_LINE_BYTES:
                        raise ApiError(
                            reply.status,
                            "answer_too_large",
                            f"the API sent an event over {MAX_EVENT_LINE_BYTES} bytes",
                        )

    def _url(self, path: str, query: Sequence[tuple[str, str]]) -> str:
        url = f"{self.base_url}{_PREFIX}{path}"
        return f"{url}?{urllib.parse.urlencode(query)}" if query else url

    def _headers(self, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """The transport's failures as `ApiError` (an answer) or `ApiUnreachable` (none)."""
        try:
            yield
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from exc
        except urllib.error.URLError as exc:
            raise ApiUnreachable(self.base_url, str(exc.reason)) from exc
        except TimeoutError as exc:
            raise ApiUnreachable(self.base_url, f"no answer within {self.timeout_s:g} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            # A connection dropped mid-answer, or something that does not speak HTTP.
            raise ApiUnreachable(self.base_url, f"{type(exc).__name__}: {exc}") from exc


def _read_capped(reply: Any, limit: int) -> bytes:
    """The answer's body, or `ApiError` once it passes `limit` bytes (never read further)."""
    raw: bytes = reply.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(
            reply.status, "answer_too_large", f"the API answered more than {limit} bytes"
        )
    return raw


def _decode_object(raw: bytes, status: int) -> JsonObject:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ApiError(
            status, "invalid_answer", "the API answered with something not JSON"
        ) from exc
    if not isinstance(value, dict):
        raise ApiError(status, "invalid_answer", "the API answered with JSON that is not an object")
    return value


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    """The API's error body as an `ApiError`; a bare status for anything else (a proxy's page)."""
    with exc:
        raw = exc.read(MAX_ERROR_BYTES)  # an error page may be anything a proxy sends
    try:
        detail = json.loads(raw)["error"]
        return ApiError(
            exc.code, str(detail["code"]), str(detail["message"]), field=detail.get("field")
        )
    except (ValueError, KeyError, TypeError):
        return ApiError(exc.code, "http_error", f"HTTP {exc.code} {exc.reason}")
