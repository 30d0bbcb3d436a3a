"""The console's pages and actions, and its route table.

Each route declares its `Access` as the API's routes do, and `auth` checks it
with the same code; the difference is only where the credentials come from
(the session cookie: `auth.SESSION_ROUTES`). An action is the API's own
handler for the same command (`_ACTIONS` names the API route, whose access it
takes), called with the console's request, then answered with a redirect back
to the page: there is no second write path, and no second rule of who may.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote, urlencode

from aiohttp import web
from aiohttp.typedefs import Handler

from services.api import reads
from services.api.auth import (
    KEY_CACHE,
    ROUTE_ACCESS,
    SESSION_KEY_OF,
    SESSION_ROUTES,
    Access,
    KeyCache,
)
from services.api.console import views
from services.api.console.assets import ASSETS, OWN_STATIC, STATIC_DIR
from services.api.console.live import live, page_cursor
from services.api.console.live_tree import created_at, live_tree
from services.api.console.oidc import OidcRefused
from services.api.console.oidc_web import (
    OIDC_CALLBACK_PATH,
    OIDC_PENDING_COOKIE,
    OIDC_PENDING_TTL_S,
    OIDC_START_PATH,
    oidc_redirect_url,
    oidc_user_key,
    pending_fields,
    pending_of,
)
from services.api.console.security import PRE_SESSION_COOKIE, SIGN_IN_PATH, secure_request
from services.api.console.sessions import COOKIE, SESSION_TTL_S
from services.api.console.stage_graph import NODE_H, NODE_W, stage_graph
from services.api.console.state import CONSOLE, render, see_other
from services.api.decider import TargetNotFound
from services.api.deps import deps
from services.api.routes import all_routes
from services.api.routes.deployments import cancel_deployment
from services.api.routes.unregistered import register_unregistered
from services.api.schemas import SYNC_STATES, RegisterUnregisteredRequest
from services.api.unregistered import PROJECTION as UNREGISTERED_VIEW
from services.api.unregistered import list_unregistered
from services.api.wire import query_int, query_str
from shared.apikeys import ApiKey
from shared.errors import Unavailable
from shared.ids import new_id
from shared.streams import category_of, check_stream_id

__all__ = ["add_console_routes", "session_key_of"]

_HOME: Final = "/console/applications"
_UNREGISTERED: Final = "/console/unregistered"


@dataclass(frozen=True)
class ConsoleRoute:
    method: str
    path: str
    handler: Handler
    name: str
    access: Access


# --- sessions -------------------------------------------------------------------------------


async def session_key_of(request: web.Request, cache: KeyCache) -> ApiKey | None:
    """`auth.SESSION_KEY_OF`: the live key the request's session cookie names (for a person
    signed in by OIDC, who has no key: their name and role, as a key without an id)."""
    console = request.app[CONSOLE]
    token = console.sessions.read(request.cookies.get(COOKIE, ""), console.clock.now())
    if token is None:
        return None
    if token.oidc_session:
        if console.oidc_sessions is None:
            return None  # OIDC was turned off: its sessions end with it
        person = await console.oidc_sessions.current(token.oidc_session)
        return None if person is None else oidc_user_key(person.user, person.role, person.expires)
    return await cache.by_id(token.key_id)


def _local(target: str) -> str:
    """Where to go after signing in: only a console path of this site (no open redirect)."""
    if target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return _HOME


async def sign_in_form(request: web.Request) -> web.Response:
    anchor = new_id()
    return _sign_in_page(request, anchor, "", status=200)


def _sign_in_page(request: web.Request, anchor: str, error: str, *, status: int) -> web.Response:
    response = render(
        request,
        "sign_in.html",
        {
            "next": _local(request.query.get("next", "")),
            "signin_csrf": request.app[CONSOLE].sessions.csrf(anchor),
            "error": error,
            "oidc": request.app[CONSOLE].oidc is not None,
        },
        status=status,
    )
    response.set_cookie(
        PRE_SESSION_COOKIE,
        anchor,
        httponly=True,
        samesite="Strict",
        secure=secure_request(request),
        path=SIGN_IN_PATH,
        max_age=3600,
    )
    return response


def _set_session(request: web.Request, response: web.Response, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        httponly=True,
        samesite="Strict",
        secure=secure_request(request),
        path="/console",
        max_age=SESSION_TTL_S,
    )


async def sign_in(request: web.Request) -> web.Response:
    """Exchange an API key for a session cookie (the key itself is not kept in the browser)."""
    form = await request.post()
    secret = form.get("api_key", "")
    key = await request.app[KEY_CACHE].lookup(secret.strip()) if isinstance(secret, str) else None
    if key is None:
        return _sign_in_page(
            request, new_id(), "That API key is unknown, malformed or revoked.", status=401
        )
    target = form.get("next", "")
    response = see_other(_local(target if isinstance(target, str) else ""))
    console = request.app[CONSOLE]
    _set_session(request, response, console.sessions.issue(key.key_id, console.clock.now()))
    response.del_cookie(PRE_SESSION_COOKIE, path=SIGN_IN_PATH)
    return response


async def oidc_start(request: web.Request) -> web.Response:
    """Send the browser to the OIDC provider, keeping the sign-in's secrets in a cookie."""
    login = request.app[CONSOLE].oidc
    if login is None:
        raise web.HTTPNotFound(text="OIDC sign-in is not configured")
    try:
        url, pending = await login.begin(
            oidc_redirect_url(request), _local(request.query.get("next", ""))
        )
    except OidcRefused as exc:
        return _sign_in_page(request, new_id(), str(exc), status=502)
    response = web.Response(status=302, headers={"Location": url})
    response.set_cookie(
        OIDC_PENDING_COOKIE,
        request.app[CONSOLE].sessions.seal(
            "oidc", pending_fields(pending, request.app[CONSOLE].clock.now())
        ),
        httponly=True,
        samesite="Lax",  # the provider's redirect back is a cross-site navigation
        secure=secure_request(request),
        path=OIDC_CALLBACK_PATH,
        max_age=OIDC_PENDING_TTL_S,
    )
    return response


async def oidc_callback(request: web.Request) -> web.Response:
    """The provider's redirect back: check it all, then the same session as a key's."""
    login, store = request.app[CONSOLE].oidc, request.app[CONSOLE].oidc_sessions
    if login is None or store is None:
        raise web.HTTPNotFound(text="OIDC sign-in is not configured")
    codec, clock = request.app[CONSOLE].sessions, request.app[CONSOLE].clock
    sealed = codec.unseal("oidc", request.cookies.get(OIDC_PENDING_COOKIE, ""))
    pending = pending_of(sealed, clock.now())
    try:
        if pending is None:
            raise OidcRefused("this sign-in was not started here, or took too long: start again")
        if "error" in request.query:
            raise OidcRefused(f"the provider refused: {request.query['error'][:200]}")
        signed_in = await login.finish(
            pending,
            request.query.get("state", ""),
            request.query.get("code", ""),
            oidc_redirect_url(request),
        )
    except OidcRefused as exc:
        response = _sign_in_page(request, new_id(), str(exc), status=403)
        response.del_cookie(OIDC_PENDING_COOKIE, path=OIDC_CALLBACK_PATH)
        return response
    # A page that moves on by itself, not a redirect: after the provider's cross-site
    # redirect, the browser would withhold the SameSite=Strict cookie from a redirect's target.
    session_id = await store.open(signed_in)
    response = render(
        request, "signed_in.html", {"next": _local(pending.next), "user": signed_in.user}
    )
    _set_session(request, response, codec.issue_oidc(session_id, clock.now()))
    response.del_cookie(OIDC_PENDING_COOKIE, path=OIDC_CALLBACK_PATH)
    return response


async def sign_out(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    token = console.sessions.read(request.cookies.get(COOKIE, ""), console.clock.now())
    if token is not None and token.oidc_session and console.oidc_sessions is not None:
        await console.oidc_sessions.close(token.oidc_session)  # on every replica at once
    response = see_other(SIGN_IN_PATH)
    response.del_cookie(COOKIE, path="/console")
    return response


# --- assets ---------------------------------------------------------------------------------


async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    path = request.app[CONSOLE].assets_dir / ASSETS[name]
    if not path.is_file():
        raise web.HTTPServiceUnavailable(
            reason=f"{name} is not installed: run `make` (npm ci) or set SLIPWAY_CONSOLE_ASSETS_DIR"
        )
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in OWN_STATIC:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-cache"})


# --- pages ----------------------------------------------------------------------------------


async def home(_request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(_HOME)


def _labels(request: web.Request) -> dict[str, str]:
    labels = {}
    for raw in request.query.getall("label", [])[:20]:
        key, sep, value = raw.partition("=")
        if sep and key.strip():
            labels[key.strip()] = value.strip()
    return labels


async def applications(request: web.Request) -> web.Response:
    search = (query_str(request, "q") or "").strip() or None
    states = tuple(s for s in request.query.getall("status", []) if s in SYNC_STATES)
    labels = _labels(request)
    cursor = await page_cursor(deps(request).store, from_views=True)
    page = await views.applications_page(
        deps(request).pool,
        search=search,
        labels=labels,
        states=states,
        after=query_str(request, "after"),
    )
    more = None
    if page.next_after is not None:
        query = [(k, v) for k, v in request.query.items() if k != "after"]
        more = "?" + urlencode([*query, ("after", page.next_after)])
    return render(
        request,
        "applications.html",
        {
            "page": page,
            "search": search or "",
            "states": states,
            "all_states": SYNC_STATES,
            "label_text": " ".join(f"{k}={v}" for k, v in labels.items()),
            "labels": labels,
            "more": more,
            "cursor": cursor,
        },
    )


async def application(request: web.Request) -> web.Response:
    api = deps(request)
    ref = request.match_info["application"]
    cursor = await page_cursor(api.store, from_views=True)
    app = await reads.get_application(api.pool, ref)
    if app is None:
        raise TargetNotFound(f"no application with the id or name {ref!r}")
    history = await views.deployment_history(api.pool, app.application_id)
    health = await views.application_health(api.store, app.application_id)
    config = await views.running_config(api.store, history, app.sync.running_commit)
    live = await live_tree(api.store, app.application_id)
    return render(
        request,
        "application.html",
        {
            "app": app,
            "health": health,
            "live": live,
            "created_at": created_at,
            "config": config,
            "history": history,
            "running_version": views.running_version(history, app.sync.running_commit),
            "done": query_str(request, "done") or "",
            "cursor": cursor,
        },
    )


async def deployment(request: web.Request) -> web.Response:
    api = deps(request)
    deployment_id = request.match_info["deployment"]
    cursor = await page_cursor(api.store, from_views=False)
    try:
        page = await views.deployment_page(api.store, deployment_id)
    except ValueError:
        page = None  # not a well-formed id
    if page is None:
        raise TargetNotFound(f"no deployment {deployment_id!r}")
    try:
        names = await reads.application_names(api.pool, api.store, [page.view.application_id])
    except Unavailable:
        names = {}  # the fold needs no read model; only the name is missing without it
    template = request.app[CONSOLE].trace_url_template
    trace_url = template.replace("{trace_id}", page.trace_id) if template and page.trace_id else ""
    # Each chart's data rides on its canvas as an attribute (escaped like any value): htmx
    # swaps keep it, and no script block is needed.
    now = datetime.now(UTC)
    charts = {
        stage_id: {c["key"]: json.dumps(c) for c in chart.as_json()["checks"]}
        for stage_id, chart in page.analyses.items()
    }
    return render(
        request,
        "deployment.html",
        {
            "page": page,
            "d": page.view,
            "app_name": names.get(page.view.application_id, ("", False))[0],
            "trace_url": trace_url,
            "charts": charts,
            "cursor": cursor,
            "done": query_str(request, "done") or "",
            "now": now,
            "graph": stage_graph(page.view, now),
            "node_w": NODE_W,
            "node_h": NODE_H,
        },
    )


async def unregistered(request: web.Request) -> web.Response:
    """Config files no application is registered at: `GET /api/v1/unregistered-applications`'s
    list, with a Register form for a person who may register."""
    api = deps(request)
    # After a registration from this page: show the list as it is once it is taken off.
    position = query_int(request, "min_position", ge=0)
    if position:
        await reads.wait_for_position(
            api.pool, position, timeout_s=api.read_wait_s, projection=UNREGISTERED_VIEW
        )
    items, next_cursor = await list_unregistered(
        api.pool,
        repository_id=None,
        after=query_int(request, "after", ge=0),
        limit=views.APPS_PAGE,
    )
    more = f"?{urlencode({'after': next_cursor})}" if next_cursor else None
    return render(
        request,
        "unregistered.html",
        {"items": items, "more": more, "done": query_str(request, "done") or ""},
    )


def _instant(request: web.Request) -> datetime | None:
    raw = (query_str(request, "at") or "").strip()
    if not raw:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            reason="at must be a time such as 2026-01-01T12:00:00Z (ISO 8601)"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def events(request: web.Request) -> web.Response:
    api = deps(request)
    category = (query_str(request, "category", max_length=64) or "").strip() or None
    stream_id = (query_str(request, "stream", max_length=300) or "").strip() or None
    if stream_id is not None:
        try:
            check_stream_id(stream_id)
        except ValueError as exc:
            raise web.HTTPBadRequest(reason=f"stream: {exc}") from None
    at = _instant(request)
    before_raw = query_str(request, "before") or ""
    before = int(before_raw) if before_raw.isdigit() and len(before_raw) < 18 else None
    rows = await views.event_rows(
        api.store, category=category, stream_id=stream_id, at=at, before=before, limit=100
    )
    # Time travel: the stream as it was at the instant, and what changed since.
    then = since = None
    if stream_id is not None and at is not None:
        if category_of(stream_id) == "deployment":
            then = await views.deployment_page(
                api.store, stream_id.removeprefix("deployment-"), up_to_time=at
            )
        since = await views.event_rows(
            api.store, category=None, stream_id=stream_id, at=None, before=None, limit=1000
        )
        since = [row for row in since if row.recorded_at > at]
    older = None
    if rows:
        query = [(k, v) for k, v in request.query.items() if k != "before"]
        older = "?" + urlencode([*query, ("before", str(rows[-1].global_position))])
    return render(
        request,
        "events.html",
        {
            "rows": rows,
            "category": category or "",
            "stream": stream_id or "",
            "at": at.isoformat() if at else "",
            "then": then,
            "since": since,
            "older": older,
        },
    )


async def insights(request: web.Request) -> web.Response:
    """The four DORA metrics: what `GET /api/v1/insights` answers for the same query (its
    handler, called in-process), as numbers and a chart per metric over the periods."""
    answer = await _API_HANDLERS["getInsights"](request)
    assert isinstance(answer, web.Response) and answer.body is not None
    report = json.loads(answer.body)  # type: ignore[arg-type]
    periods = report.get("periods", [])
    labels = [p["start"][:10] for p in periods]

    def chart(title: str, field: str, scale: float = 1.0) -> str:
        values = [
            None if p["figures"][field] is None else round(p["figures"][field] * scale, 3)
            for p in periods
        ]
        return json.dumps({"kind": "bars", "labels": labels, "title": title, "values": values})

    return render(
        request,
        "insights.html",
        {
            "report": report,
            "query": dict(request.query),
            "label_text": " ".join(request.query.getall("label", [])),
            "charts": [
                (
                    "Deployment frequency (per day)",
                    chart("per day", "deployment_frequency_per_day"),
                ),
                (
                    "Lead time for changes (median, hours)",
                    chart("hours", "lead_time_median_s", 1 / 3600),
                ),
                ("Change failure rate (%)", chart("%", "change_failure_rate", 100)),
                (
                    "Failed-deployment recovery time (median, hours)",
                    chart("hours", "recovery_time_median_s", 1 / 3600),
                ),
            ],
        },
    )


# --- actions: the API's own handlers --------------------------------------------------------


_API_HANDLERS: Final = {r.name: r.handler for r in all_routes()}


def _action(api_route: str, back: Callable[[web.Request], str], done: str) -> Handler:
    api_handler = _API_HANDLERS[api_route]

    async def handler(request: web.Request) -> web.StreamResponse:
        form = await request.post()  # read before the API's handler: it finds an empty body
        if api_route == "cancelDeployment":
            await cancel_deployment(request, rollback=form.get("rollback") != "false")
        elif api_route == "registerUnregisteredApplication":
            name = form.get("name")
            answer = await register_unregistered(
                request,
                RegisterUnregisteredRequest(
                    name=(name.strip() or None) if isinstance(name, str) else None
                ),
            )
            app = json.loads(answer.body)  # type: ignore[arg-type]
            # The page reads a view: it waits for the registration to have left the list.
            done_query = urlencode(
                {"done": f"registered {app['name']}", "min_position": app["position"]}
            )
            raise web.HTTPSeeOther(f"{back(request)}?{done_query}")
        else:
            await api_handler(request)
        raise web.HTTPSeeOther(f"{back(request)}?done={quote(done)}")

    return handler


def _app_page(request: web.Request) -> str:
    return f"/console/applications/{quote(request.match_info['application'])}"


def _deployment_page(request: web.Request) -> str:
    return f"/console/deployments/{quote(request.match_info['deployment'])}"


_ACTIONS: Final = (
    ("/applications/{application}/sync", "syncApplication", _app_page, "sync requested"),
    ("/applications/{application}/disable", "disableApplication", _app_page, "disabled"),
    ("/applications/{application}/enable", "enableApplication", _app_page, "enabled"),
    ("/deployments/{deployment}/cancel", "cancelDeployment", _deployment_page, "cancel requested"),
    (
        "/deployments/{deployment}/stages/{stage}/approve",
        "approveStage",
        _deployment_page,
        "approved",
    ),
    ("/deployments/{deployment}/stages/{stage}/skip", "skipStage", _deployment_page, "skip asked"),
    (
        "/unregistered-applications/{config}/register",
        "registerUnregisteredApplication",
        lambda _request: _UNREGISTERED,
        "registered",
    ),
)


def console_routes() -> tuple[ConsoleRoute, ...]:
    api_access = {r.name: r.access for r in all_routes()}
    routes = [
        ConsoleRoute("GET", "/console", home, "console.home", Access.READ),
        ConsoleRoute("GET", SIGN_IN_PATH, sign_in_form, "console.signInForm", Access.PUBLIC),
        ConsoleRoute("POST", SIGN_IN_PATH, sign_in, "console.signIn", Access.PUBLIC),
        ConsoleRoute("POST", "/console/sign-out", sign_out, "console.signOut", Access.PUBLIC),
        ConsoleRoute("GET", OIDC_START_PATH, oidc_start, "console.oidcStart", Access.PUBLIC),
        ConsoleRoute(
            "GET", OIDC_CALLBACK_PATH, oidc_callback, "console.oidcCallback", Access.PUBLIC
        ),
        ConsoleRoute("GET", "/console/assets/{name}", asset, "console.asset", Access.PUBLIC),
        ConsoleRoute("GET", "/console/static/{name}", static, "console.static", Access.PUBLIC),
        ConsoleRoute("GET", _HOME, applications, "console.applications", Access.READ),
        ConsoleRoute(
            "GET", "/console/applications/{application}", application, "console.application",
            Access.READ,
        ),
        ConsoleRoute(
            "GET", "/console/deployments/{deployment}", deployment, "console.deployment",
            Access.READ,
        ),
        ConsoleRoute("GET", "/console/events", events, "console.events", Access.READ),
        ConsoleRoute(
            "GET", _UNREGISTERED, unregistered, "console.unregistered",
            api_access["listUnregisteredApplications"],
        ),
        ConsoleRoute("GET", "/console/live", live, "console.live", Access.READ),
    ]  # fmt: skip
    if "getInsights" in api_access:  # the insights route (issue 15's DORA metrics) is there
        routes.append(
            ConsoleRoute(
                "GET", "/console/insights", insights, "console.insights", api_access["getInsights"]
            )
        )
    for path, api_route, back, done in _ACTIONS:
        routes.append(
            ConsoleRoute(
                "POST",
                "/console" + path,
                _action(api_route, back, done),
                f"console.{api_route}",
                api_access[api_route],  # exactly the API's rule for the same command
            )
        )
    return tuple(routes)


def add_console_routes(app: web.Application, extra: tuple[ConsoleRoute, ...] = ()) -> None:
    """Register every console page (and `extra` ones) with the role each needs."""
    access = app.setdefault(ROUTE_ACCESS, {})
    session_routes = app.setdefault(SESSION_ROUTES, set())
    app[SESSION_KEY_OF] = session_key_of
    for route in (*console_routes(), *extra):
        app.router.add_route(route.method, route.path, route.handler, name=route.name)
        access[route.name] = route.access
        if route.access is not Access.PUBLIC:
            session_routes.add(route.name)
