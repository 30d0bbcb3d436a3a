"""Slipway's API client: what the CLI, the sandbox and scripts use to talk to the API.

`api` holds the calls, one method per route; `transport` the HTTP exchange under
them (the URL and key, the caps on what is read, the error tree's `ApiError` and
`ApiUnreachable`). Its own package because it is neither the CLI nor a development
tool: `slipway_cli` and the sandbox (`slipway_sandbox`) both stand on it, and it
stands on nothing of Slipway but the error tree.
"""

from slipway_client.api import ApiClient
from slipway_client.transport import (
    API_KEY_ENV,
    API_URL_ENV,
    DEFAULT_API_URL,
    MAX_EVENT_LINE_BYTES,
    ApiError,
    ApiUnreachable,
    JsonObject,
    api_key,
    api_url,
)

__all__ = [
    "API_KEY_ENV",
    "API_URL_ENV",
    "DEFAULT_API_URL",
    "MAX_EVENT_LINE_BYTES",
    "ApiClient",
    "ApiError",
    "ApiUnreachable",
    "JsonObject",
    "api_key",
    "api_url",
]
