"""The one way out to a Kubernetes API server: a client of our own, one request, mapped errors.

`ApiServer` holds the `kubernetes_asyncio` `ApiClient` of one cluster (from a
kubeconfig and context, or the pod's service account; never the process-wide
default) and sends one REST request at a time with `request`. Errors are
mapped at this boundary, each naming the operation and the object (`apply
Deployment shop/web: …`) with the server's own message: 401/403 →
`Forbidden`, 404 → `NotFound`, 409 → `ResourceConflict`, 400/422 → `Invalid`,
429/5xx and anything that never answered (refused, reset, timed out) →
`PlatformUnavailable` (an `Unavailable`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, Final

import aiohttp
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import load_incluster_config, new_client_from_config
from kubernetes_asyncio.config.config_exception import ConfigException

from shared.errors import (
    ConfigError,
    Forbidden,
    Invalid,
    NotFound,
    PlatformError,
    PlatformUnavailable,
    ResourceConflict,
)
from shared.redaction import excerpt

__all__ = ["ApiServer", "api_error"]

_API_MESSAGE_CHARS: Final = 1000
_OBJECT: Final = dict.fromkeys((200, 201, 202), "object")


class ApiServer:
    """One cluster's API server, reached through a kubeconfig file and context.

    Without a kubeconfig (None), the in-cluster service account is used; its
    token file is re-read as the kubelet rotates it.
    """

    def __init__(
        self, kubeconfig: Path | None, context: str | None, *, request_timeout_s: float
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.request_timeout_s = request_timeout_s
        self._client: ApiClient | None = None

    async def open(self) -> None:
        """Load the kubeconfig into a client of our own; a bad file or context is a ConfigError."""
        if self._client is not None:
            return
        if self.kubeconfig is None:
            self._client = _in_cluster_client()
            return
        where = f"{self.kubeconfig}" + (f" (context {self.context!r})" if self.context else "")
        try:
            self._client = await new_client_from_config(
                config_file=str(self.kubeconfig), context=self.context, persist_config=False
            )
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"kubeconfig {where}: {exc}") from exc

    async def close(self) -> None:
        """Close the HTTP client (idempotent)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        what: str,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | list[Any] | None = None,
        content_type: str = "application/json",
    ) -> tuple[dict[str, Any], int]:
        """Send one request; the decoded JSON object and HTTP status, or a mapped error."""
        if self._client is None:
            raise RuntimeError("KubernetesPlatform is not open: use `async with` or await open()")
        try:
            data, code, _headers = await self._client.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map=_OBJECT,
                auth_settings=["BearerToken"],
                _return_http_data_only=False,
                _preload_content=True,
                _request_timeout=self.request_timeout_s,
            )
        except ApiException as exc:
            raise api_error(exc, verb, what) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unreachable(verb, what, exc) from exc
        return (data if isinstance(data, dict) else {}), int(code)

    async def watch(
        self,
        path: str,
        *,
        what: str,
        query: list[tuple[str, str]],
        timeout_s: float,
    ) -> AsyncGenerator[tuple[str, dict[str, Any]]]:
        """Watch the collection at `path`: each event's (type, object) as the server sends
        it, until the server ends the stream (`timeoutSeconds` in `query`, or its own
        limit). A refusal is mapped as `request` maps it; a line that is not a JSON event,
        or longer than the client's buffer, is `Invalid` (the server is not trusted).

        `timeout_s` bounds connecting and each wait between events; the caller bounds
        the whole watch."""
        if self._client is None:
            raise RuntimeError("KubernetesPlatform is not open: use `async with` or await open()")
        verb = "watch"
        try:
            response = await self._client.call_api(
                path,
                "GET",
                query_params=[*query, ("watch", "1")],
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(sock_connect=timeout_s, sock_read=timeout_s),
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unreachable(verb, what, exc) from exc
        try:
            if not 200 <= response.status <= 299:
                refused = ApiException(status=response.status, reason=response.reason)
                refused.body = await response.read()
                raise api_error(refused, verb, what)
            while line := await response.content.readline():
                if line.strip():
                    yield _watch_event(line, verb, what)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unreachable(verb, what, exc) from exc
        except aiohttp.http_exceptions.LineTooLong as exc:
            raise Invalid(
                f"{verb} {what}: an event longer than the client reads", resource=what, code=0
            ) from exc
        finally:
            response.release()


def _watch_event(line: bytes, verb: str, what: str) -> tuple[str, dict[str, Any]]:
    """One watch line's (type, object); `Invalid` unless it is `{"type": str, "object": {}}`."""
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    kind = event.get("type") if isinstance(event, dict) else None
    obj = event.get("object") if isinstance(event, dict) else None
    if not isinstance(kind, str) or not isinstance(obj, dict):
        raise Invalid(
            f"{verb} {what}: the server sent a watch event that is not "
            f'{{"type": …, "object": {{…}}}}: {excerpt(line.decode(errors="replace"), 200)}',
            resource=what,
            code=0,
        )
    return kind, obj


def _unreachable(verb: str, what: str, exc: BaseException) -> PlatformUnavailable:
    """Anything that never answered (refused, reset, timed out): the cluster is unavailable."""
    detail = str(exc) or type(exc).__name__
    return PlatformUnavailable(
        f"{verb} {what}: cannot reach the Kubernetes API server: {detail}",
        resource=what,
        reason="Unavailable",
    )


def api_error(exc: ApiException, verb: str, what: str) -> PlatformError:
    """Map the API server's refusal to the error tree, keeping its `Status` message."""
    code = int(exc.status or 0)
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
    reason, message = str(exc.reason or ""), str(body or exc.reason or "")
    details: dict[str, Any] = {}
    try:
        status = json.loads(exc.body) if exc.body else None
    except (TypeError, ValueError):
        status = None
    if isinstance(status, dict):
        reason = str(status.get("reason") or reason)
        message = str(status.get("message") or message)
        found = status.get("details")
        details = found if isinstance(found, dict) else {}
    # The server's words are quoted into stage logs and reasons (so into the log): at most
    # a short, redacted, printable excerpt — a proxy's HTML page or an echoed Secret is not.
    text = f"{verb} {what}: {excerpt(message, _API_MESSAGE_CHARS)}"
    if code == 404 and verb == "apply" and details.get("kind") == "namespaces":
        text += " (create the namespace first, or set autoCreateNamespace)"
    error: type[PlatformError]
    if code in (401, 403):
        error = Forbidden
    elif code == 404:
        error = NotFound
    elif code in (409, 410):
        error = ResourceConflict
    elif code in (400, 422):
        error = Invalid
    elif code == 429 or code >= 500:
        error = PlatformUnavailable
    else:
        error = PlatformError
    return error(text, resource=what, reason=reason, code=code)


def _in_cluster_client() -> ApiClient:
    """A client from the pod's service account; outside a pod, a ConfigError that says so."""
    configuration = Configuration()
    try:
        load_incluster_config(  # type: ignore[no-untyped-call]  # kubernetes_asyncio is untyped
            client_configuration=configuration, try_refresh_token=True
        )
    except ConfigException as exc:
        raise ConfigError(
            f"no kubeconfigPath is set and this is not a Kubernetes pod ({exc}); "
            "set the platform provider's kubeconfigPath"
        ) from exc
    return ApiClient(configuration=configuration)
