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
`http://127.0.0.1:8080`; the API key from the caller, else `SLIPWAY_API_KEY`
(sent as `Authorization: Bearer <key>`). Answers are returned as decoded JSON
objects; the API's OpenAPI document (`/api/v1/openapi.json`) describes them.
Waiting for a deployment or a cascade delete by polling is `slipway_cli.waiting`.
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
    "ApiClient",
    "ApiError",
    "ApiUnreachable",
    "api_key",
    "api_url",
]

API_URL_ENV: Final = "SLIPWAY_API_URL"
API_KEY_ENV: Final = "SLIPWAY_API_KEY"
DEFAULT_API_URL: Final = "http://127.0.0.1:8080"
_PREFIX: Final = "/api/v1"
_PAGE: Final = 500

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


class ApiClient:
    """Calls the API at `base_url` (scheme, host and port; the `/api/v1` prefix is added)."""

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
        verify: bool = True,
    ) -> JsonObject:
        """Register an application; `verify=False` skips the check of its config at the head."""
        body: JsonObject = {"name": name, "repository_id": repository_id, "path": path}
        if config_filename is not None:
            body["config_filename"] = config_filename
        if platform_provider is not None:
            body["platform_provider"] = platform_provider
        if labels:
            body["labels"] = dict(labels)
        if not verify:
            body["verify"] = False
        return self.request("POST", "/applications", body=body)

    def list_applications(
        self,
        *,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        disabled: bool | None = None,
        sync_states: Sequence[str] = (),
    ) -> list[JsonObject]:
        """Every matching application, ordered by name (following the pages)."""
        query: list[tuple[str, str]] = [("limit", str(_PAGE))]
        if name is not None:
            query.append(("name", name))
        query.extend(("label", f"{key}={value}") for key, value in (labels or {}).items())
        if disabled is not None:
            query.append(("disabled", "true" if disabled else "false"))
        query.extend(("sync_state", state) for state in sync_states)
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
        """Stop deploying the application until `enable_application`."""
        return self.request("POST", f"/applications/{_segment(ref)}/disable")

    def enable_application(self, ref: str) -> JsonObject:
        """Deploy the application again after `disable_application`."""
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

    def adopt_application(
        self,
        ref: str,
        *,
        running_commit_hash: str,
        resources: Sequence[str],
        pipecd_application_id: str = "",
    ) -> JsonObject:
        """Record that the application took over these objects, `running_commit_hash` running."""
        body = {
            "running_commit_hash": running_commit_hash,
            "resources": list(resources),
            "pipecd_application_id": pipecd_application_id,
        }
        return self.request("POST", f"/applications/{_segment(ref)}/adoption", body=body)

    # --- deployments ----------------------------------------------------------------------

    def list_deployments(
        self,
        *,
        application: str | None = None,
        statuses: Sequence[str] = (),
        limit: int = 50,
    ) -> list[JsonObject]:
        """The newest `limit` deployments, optionally of one application and some statuses."""
        query: list[tuple[str, str]] = [("limit", str(min(limit, 500)))]
        if application is not None:
            query.append(("application", application))
        query.extend(("status", status) for status in statuses)
        items: list[JsonObject] = []
        cursor: str | None = None
        while len(items) < limit:
            page = self.request(
                "GET", "/deployments", query=[*query, *([("cursor", cursor)] if cursor else [])]
            )
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items[:limit]

    def get_deployment(self, deployment_id: str) -> JsonObject:
        """The deployment with its stages."""
        return self.request("GET", f"/deployments/{_segment(deployment_id)}")

    def deployment_logs(
        self, deployment_id: str, *, stage_id: str | None = None
    ) -> list[JsonObject]:
        """A deployment's stage log lines, of one stage or all."""
        query = [("stage_id", stage_id)] if stage_id else []
        return list(
            self.request("GET", f"/deployments/{_segment(deployment_id)}/logs", query=query)[
                "items"
            ]
        )

    def follow_logs(
        self, deployment_id: str, *, stage_id: str | None = None
    ) -> Iterator[tuple[str, JsonObject]]:
        """`("log", line)` for each line, stored then live, then `("end", {status})`."""
        query = [("follow", "true"), *([("stage_id", stage_id)] if stage_id else [])]
        yield from self.server_sent_events(
            f"/deployments/{_segment(deployment_id)}/logs", query=query
        )

    def cancel_deployment(self, deployment_id: str, *, rollback: bool = True) -> JsonObject:
        """Cancel a deployment; with `rollback`, roll back to the commit that ran before."""
        return self.request(
            "POST", f"/deployments/{_segment(deployment_id)}/cancel", body={"rollback": rollback}
        )

    def approve_stage(self, deployment_id: str, stage_id: str) -> JsonObject:
        """Approve a WAIT_APPROVAL stage."""
        return self.request(
            "POST", f"/deployments/{_segment(deployment_id)}/stages/{_segment(stage_id)}/approve"
        )

    def skip_stage(self, deployment_id: str, stage_id: str) -> JsonObject:
        """Skip a stage of a kind the API allows skipping."""
        return self.request(
            "POST", f"/deployments/{_segment(deployment_id)}/stages/{_segment(stage_id)}/skip"
        )

    def rejudge(self, deployment_id: str, *, judge: str | None = None) -> JsonObject:
        """The deployment's analyses with their tick verdicts recomputed (by `judge`)."""
        query = [("judge", judge)] if judge else []
        return self.request("GET", f"/deployments/{_segment(deployment_id)}/rejudge", query=query)

    # --- deployment chains ------------------------------------------------------------------

    def list_chains(self, *, limit: int = 20) -> list[JsonObject]:
        """The newest chains, each with its blocks."""
        items: list[JsonObject] = self.request(
            "GET", "/chains", query=[("limit", str(min(limit, 100)))]
        )["items"]
        return items

    def get_chain(self, chain_id: str) -> JsonObject:
        """One chain with its blocks and their deployments."""
        return self.request("GET", f"/chains/{_segment(chain_id)}")

    def cancel_chain(self, chain_id: str) -> JsonObject:
        """Cancel a chain: later blocks never start, running deployments are cancelled."""
        return self.request("POST", f"/chains/{_segment(chain_id)}/cancel")

    # --- insights ---------------------------------------------------------------------------

    def insights(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        period: str = "day",
        application: str | None = None,
        labels: Sequence[str] = (),
    ) -> JsonObject:
        """The four DORA metrics over a range (`GET /insights`; docs/insights.md)."""
        query: list[tuple[str, str]] = [("period", period)]
        for name, value in (("since", since), ("until", until), ("application", application)):
            if value is not None:
                query.append((name, value))
        query.extend(("label", label) for label in labels)
        return self.request("GET", "/insights", query=query)

    # --- the event log ----------------------------------------------------------------------

    def list_events(
        self,
        *,
        after: str | None = None,
        from_position: int | None = None,
        to_position: int | None = None,
        category: str | None = None,
        limit: int = 100,
    ) -> JsonObject:
        """A page of the event log after a cursor, within positions, of one category."""
        query: list[tuple[str, str]] = [("limit", str(limit))]
        if after is not None:
            query.append(("after", after))
        if from_position is not None:
            query.append(("from_position", str(from_position)))
        if to_position is not None:
            query.append(("to_position", str(to_position)))
        if category is not None:
            query.append(("category", category))
        return self.request("GET", "/events", query=query)

    def stream_events(self, stream_id: str) -> list[JsonObject]:
        """Every event of the stream, page after page."""
        items: list[JsonObject] = []
        query: list[tuple[str, str]] = [("limit", "1000")]
        while True:
            page = self.request("GET", f"/events/streams/{_segment(stream_id)}", query=query)
            items.extend(page["items"])
            if not page.get("next_cursor"):
                return items
            query = [("limit", "1000"), ("after", str(page["next_cursor"]))]

    def stream_state(
        self, stream_id: str, *, position: int | None = None, at: str | None = None
    ) -> JsonObject:
        """A stream's folded state, now or as of a position or time."""
        query: list[tuple[str, str]] = []
        if position is not None:
            query.append(("position", str(position)))
        if at is not None:
            query.append(("at", at))
        return self.request("GET", f"/events/streams/{_segment(stream_id)}/state", query=query)

    # --- plan preview -----------------------------------------------------------------------

    def plan_preview(
        self,
        *,
        repository_id: str,
        base_branch: str | None = None,
        head_branch: str | None = None,
        head_commit: str | None = None,
    ) -> JsonObject:
        """What merging the head into the base would deploy, planned by the API from its clone.

        Give one of `head_branch` and `head_commit`; the base defaults to the branch
        the server's control config watches for that repository.
        """
        body: JsonObject = {"repository_id": repository_id}
        for name, value in (
            ("base_branch", base_branch),
            ("head_branch", head_branch),
            ("head_commit", head_commit),
        ):
            if value is not None:
                body[name] = value
        return self.request("POST", "/plan-preview", body=body)

    # --- API keys ---------------------------------------------------------------------------

    def create_api_key(self, *, role: str, name: str = "") -> JsonObject:
        """Make an API key with `role`; the answer holds the secret, shown only once."""
        return self.request("POST", "/api-keys", body={"role": role, "name": name})

    def list_api_keys(self) -> list[JsonObject]:
        """Every API key's id, name, role and state (never the secrets)."""
        return list(self.request("GET", "/api-keys")["items"])

    def revoke_api_key(self, key_id: str) -> JsonObject:
        """Revoke an API key."""
        return self.request("DELETE", f"/api-keys/{_segment(key_id)}")

    # --- secrets ----------------------------------------------------------------------------

    def encrypt_secret(self, data: str) -> str:
        """`data` encrypted for the server's configured key (PipeCD's format)."""
        return str(self.request("POST", "/secrets:encrypt", body={"data": data})["ciphertext"])

    # --- the event watcher ------------------------------------------------------------------

    def register_event(
        self,
        *,
        name: str,
        data: str,
        labels: Mapping[str, str],
        contexts: Mapping[str, str] | None = None,
        commit_hash: str = "",
    ) -> str:
        """Record an event for the event watcher; its id."""
        body: JsonObject = {"name": name, "data": data, "labels": dict(labels)}
        if contexts:
            body["contexts"] = dict(contexts)
        if commit_hash:
            body["commit_hash"] = commit_hash
        return str(self.request("POST", "/event-watcher/events", body=body)["event_id"])

    def list_watched_events(self, *, name: str = "", limit: int = 100) -> list[JsonObject]:
        """Registered event-watcher events, with what each one changed."""
        query: list[tuple[str, str]] = [("limit", str(limit))]
        if name:
            query.append(("name", name))
        return list(self.request("GET", "/event-watcher/events", query=query)["items"])

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


def _segment(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


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
