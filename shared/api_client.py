"""A small, synchronous client of the Slipway HTTP API (stdlib only), for the CLI and scripts.

Failures are mapped into the error tree at this boundary:

```
SlipwayError
├── ApiError          the API answered with an error: status, code, message, field
├── Unavailable
│   └── ApiUnreachable  no answer at all (refused, timed out, DNS): names the URL
└── ConfigError       the base URL itself is unusable
```

The base URL comes from the caller, else `SLIPWAY_API_URL`, else
`http://127.0.0.1:8080`. Answers are returned as decoded JSON objects; the
API's OpenAPI document (`/api/v1/openapi.json`) describes them.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, Final

from shared.errors import ConfigError, SlipwayError, Unavailable

__all__ = [
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "ApiClient",
    "ApiError",
    "ApiUnreachable",
    "api_url",
]

API_URL_ENV: Final = "SLIPWAY_API_URL"
DEFAULT_API_URL: Final = "http://127.0.0.1:8080"
_PREFIX: Final = "/api/v1"
_PAGE: Final = 500

JsonObject = dict[str, Any]


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


class ApiClient:
    """Calls the API at `base_url` (scheme, host and port; the `/api/v1` prefix is added)."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"API URL {base_url!r} must look like http://host:port (from --api-url or "
                f"${API_URL_ENV})"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    # --- applications ---------------------------------------------------------------------

    def register_application(
        self,
        *,
        name: str,
        repository_id: str,
        path: str,
        config_filename: str | None = None,
        platform_provider: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> JsonObject:
        body: JsonObject = {"name": name, "repository_id": repository_id, "path": path}
        if config_filename is not None:
            body["config_filename"] = config_filename
        if platform_provider is not None:
            body["platform_provider"] = platform_provider
        if labels:
            body["labels"] = dict(labels)
        return self.request("POST", "/applications", body=body)

    def list_applications(
        self,
        *,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        disabled: bool | None = None,
    ) -> list[JsonObject]:
        """Every matching application, ordered by name (following the pages)."""
        query: list[tuple[str, str]] = [("limit", str(_PAGE))]
        if name is not None:
            query.append(("name", name))
        query.extend(("label", f"{key}={value}") for key, value in (labels or {}).items())
        if disabled is not None:
            query.append(("disabled", "true" if disabled else "false"))
        items: list[JsonObject] = []
        cursor: str | None = None
        while True:
            page = self.request(
                "GET", "/applications", query=[*query, *([("cursor", cursor)] if cursor else [])]
            )
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def get_application(self, ref: str) -> JsonObject:
        """The application whose id or name is `ref`."""
        return self.request("GET", f"/applications/{_segment(ref)}")

    def disable_application(self, ref: str) -> JsonObject:
        return self.request("POST", f"/applications/{_segment(ref)}/disable")

    def enable_application(self, ref: str) -> JsonObject:
        return self.request("POST", f"/applications/{_segment(ref)}/enable")

    def delete_application(self, ref: str, *, cascade: bool = False) -> JsonObject:
        """Delete the application; with `cascade`, its live resources go too (asynchronously)."""
        return self.request(
            "DELETE",
            f"/applications/{_segment(ref)}",
            query=[("cascade", "true" if cascade else "false")],
        )

    def sync_application(self, ref: str, *, strategy: str = "auto") -> JsonObject:
        """Ask for a deployment of the branch head; the answer carries the `request_id`."""
        return self.request(
            "POST", f"/applications/{_segment(ref)}/sync", body={"strategy": strategy}
        )

    # --- the transport --------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: JsonObject | None = None,
    ) -> JsonObject:
        """Send one request; the decoded JSON object of a 2xx answer, else `ApiError`."""
        url = f"{self.base_url}{_PREFIX}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - the scheme is checked in __init__
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:  # noqa: S310 - as above
                return _decode_object(reply.read(), reply.status)
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from exc
        except urllib.error.URLError as exc:
            raise ApiUnreachable(self.base_url, str(exc.reason)) from exc
        except TimeoutError as exc:
            raise ApiUnreachable(self.base_url, f"no answer within {self.timeout_s:g} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            # A connection dropped mid-answer, or something that does not speak HTTP.
            raise ApiUnreachable(self.base_url, f"{type(exc).__name__}: {exc}") from exc


def _segment(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


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
        raw = exc.read()
    try:
        detail = json.loads(raw)["error"]
        return ApiError(
            exc.code, str(detail["code"]), str(detail["message"]), field=detail.get("field")
        )
    except (ValueError, KeyError, TypeError):
        return ApiError(exc.code, "http_error", f"HTTP {exc.code} {exc.reason}")
