"""What the console keeps on the Application, and rendering a page with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import jinja2
from aiohttp import web

from services.api.auth import PRINCIPAL, Access
from services.api.console.db_clock import DatabaseClock
from services.api.console.oidc import OidcLogin
from services.api.console.oidc_sessions import OidcSessions
from services.api.console.sessions import COOKIE, SessionCodec
from services.api.limits import StreamSlots
from shared.apikeys import Role, role_allows
from shared.planning.version import shown_version

__all__ = ["CONSOLE", "LIVE_STREAMS_PER_KEY", "Console", "can", "render", "see_other"]

LIVE_STREAMS_PER_KEY: Final = 16
"""Console pages one key may hold open at once (each holds one live stream); 429 beyond."""
_TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
_ROLE_OF: Final[dict[Access, Role]] = {
    Access.READ: "read-only",
    Access.WRITE: "read-write",
    Access.ADMIN: "admin",
}


@dataclass(frozen=True)
class Console:
    """What the console keeps on the aiohttp application: sessions, assets, templates, limits."""

    sessions: SessionCodec
    assets_dir: Path
    live_streams: StreamSlots = field(default_factory=lambda: StreamSlots(LIVE_STREAMS_PER_KEY))
    """Each key's open live streams (pages open in tabs), capped like the API's follows."""
    trace_url_template: str = ""
    """E.g. `http://jaeger:16686/trace/{trace_id}`; "" shows no trace link."""
    templates: jinja2.Environment = field(default_factory=lambda: _environment())
    oidc: OidcLogin | None = None
    """The OpenID Connect provider people may sign in with (`spec.console.oidc`), if any."""
    oidc_sessions: OidcSessions | None = None
    """Their sessions, with roles re-checked (set with `oidc`)."""
    clock: DatabaseClock = field(default_factory=DatabaseClock)
    """The console's time, the database's: cookies' ends are on it, as every replica's are."""


CONSOLE = web.AppKey("console", Console)


def _to_datetime(value: object) -> datetime | None:
    """A time from a JSON document (ISO 8601 text) as a datetime, for `age`."""
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,  # every value a page shows is escaped unless marked otherwise
        undefined=jinja2.StrictUndefined,
    )
    env.filters["todatetime"] = _to_datetime
    # A deployment's page has its version whole (the fold's); listings have it clipped.
    env.globals["shown_version"] = shown_version
    return env


def can(request: web.Request, access: Access) -> bool:
    """Whether the signed-in key's role allows `access`: the same rule `auth` enforces, used
    only to decide which buttons a page shows (the post is checked again by `auth`)."""
    principal = request.get(PRINCIPAL)
    needed = _ROLE_OF.get(access)
    return principal is not None and needed is not None and role_allows(principal.role, needed)


def _age(value: datetime | None) -> str:
    if value is None:
        return ""
    seconds = int((datetime.now(UTC) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    """Render a page with what every page needs (principal, CSRF token, roles, assets)."""
    console = request.app[CONSOLE]
    codec = console.sessions
    principal = request.get(PRINCIPAL)
    page = console.templates.get_template(template)
    body = page.render(
        **context,
        request_path=request.path_qs,
        principal=principal,
        csrf=codec.csrf(request.cookies.get(COOKIE, "")),
        can_write=can(request, Access.WRITE),
        can_admin=can(request, Access.ADMIN),
        age=_age,
        insights="console.insights" in request.app.router.named_resources(),
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def see_other(location: str) -> web.Response:
    """A 303 to `location` (after a form's post, the browser GETs the page again)."""
    return web.Response(status=303, headers={"Location": location})
