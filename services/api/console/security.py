"""The console's middleware: CSRF on every post, security headers, errors as pages.

It runs before the API's error and auth middlewares (`app.create_app`), on
console paths only:

- a request that changes something (any method but GET/HEAD) must carry the
  CSRF token of its session (the sign-in form: of its pre-session cookie), in
  the form field `csrf` or the `X-CSRF-Token` header; otherwise 403 before any
  handler or role check runs;
- what the inner middlewares answer as JSON errors becomes a page: a 401 on a
  GET redirects to the sign-in page, and comes back afterwards;
- every console answer carries a Content-Security-Policy that allows scripts
  from the console's own origin only (no inline script, no eval), and the
  headers that keep it out of frames and from being sniffed or cached.
"""

from __future__ import annotations

import json
from typing import Final
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler

from services.api.console.sessions import COOKIE
from services.api.console.state import CONSOLE, render, see_other

__all__ = [
    "CONSOLE_PREFIX",
    "CSP",
    "PRE_SESSION_COOKIE",
    "SIGN_IN_PATH",
    "add_security_headers",
    "console_middleware",
    "secure_request",
]

CONSOLE_PREFIX: Final = "/console"
SIGN_IN_PATH: Final = "/console/sign-in"
PRE_SESSION_COOKIE: Final = "slipway_signin"
"""A random value set with the sign-in form; its CSRF token is the form's."""

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
_SAFE_METHODS: Final = frozenset({"GET", "HEAD"})


def secure_request(request: web.Request) -> bool:
    """Whether the browser reached us over TLS (directly, or through a proxy that says so):
    then cookies are `Secure`. Believing the header can only make a cookie stricter."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every console answer, streams included, gets the headers."""
    if request.path.startswith(CONSOLE_PREFIX):
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.path.startswith(f"{CONSOLE_PREFIX}/assets/"):
            response.headers.setdefault("Cache-Control", "no-store")


async def _csrf_ok(request: web.Request) -> bool:
    codec = request.app[CONSOLE].sessions
    cookie = PRE_SESSION_COOKIE if request.path == SIGN_IN_PATH else COOKIE
    token = request.headers.get("X-CSRF-Token", "")
    if not token and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        value = form.get("csrf", "")
        token = value if isinstance(value, str) else ""
    return codec.csrf_ok(request.cookies.get(cookie, ""), token)


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Console paths: unsafe methods need the CSRF token; errors become pages, a 401 the sign-in."""
    if not request.path.startswith(CONSOLE_PREFIX):
        return await handler(request)
    if request.method not in _SAFE_METHODS and not await _csrf_ok(request):
        return render(
            request,
            "error.html",
            {
                "status": 403,
                "message": "the form's CSRF token is missing or wrong: "
                "reload the page and try again",
            },
            status=403,
        )
    response = await handler(request)
    if response.status < 400 or response.content_type != "application/json":
        return response
    if response.status == 401 and request.method in _SAFE_METHODS:
        return see_other(f"{SIGN_IN_PATH}?next={quote(request.path_qs, safe='')}")
    assert isinstance(response, web.Response)
    try:
        message = json.loads(response.body or b"{}")["error"]["message"]  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError):
        message = response.reason
    return render(
        request,
        "error.html",
        {"status": response.status, "message": message},
        status=response.status,
    )
