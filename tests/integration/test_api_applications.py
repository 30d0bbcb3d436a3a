"""The API over real HTTP and PostgreSQL: registrations, reads, commands, errors, the document.

The app is served on a loopback port in the test's event loop, with the
`applications` projection's runner live beside it, as the projector service
keeps it in the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from services.api.app import ApiServer, create_app
from services.api.auth import PRINCIPAL, Access, Principal, required_access
from services.api.routes import API_PREFIX, all_routes
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.catalog import ApplicationNameReserved, ApplicationRegistered, SyncRequested
from shared.ids import new_id
from shared.testing import wait_until
from tests.support.api import api_key_for, auth_headers, running_projection, served_api

APPS = f"{API_PREFIX}/applications"


@pytest.fixture
async def http(
    store: EventStore, projector_store: EventStore, api_pool: asyncpg.Pool
) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the API, served with its projection running."""
    async with (
        running_projection(projector_store),
        served_api(store, api_pool) as url,
        aiohttp.ClientSession(base_url=url, headers=auth_headers(api_key_for(url))) as session,
    ):
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None, **params: Any
) -> tuple[int, Any]:
    async with http.request(method, path, json=body, params=params or None) as reply:
        return reply.status, await reply.json()


def body_of(name: str, **changes: Any) -> dict[str, Any]:
    return {"name": name, "repository_id": "config", "path": f"{name}/dev"} | changes


async def registered(http: aiohttp.ClientSession, name: str, **changes: Any) -> dict[str, Any]:
    status, app = await call(http, "POST", APPS, body_of(name, **changes))
    assert status == 201, app
    return dict(app)


async def test_register_answers_the_new_application_and_reads_see_it_after_its_position(
    http: aiohttp.ClientSession,
) -> None:
    """A 201 carries the registered state and position; GET by id or name then answers the same."""
    async with http.post(
        APPS,
        json=body_of("account-dev", labels={"env": "dev"}, platform_provider="kubesim"),
    ) as reply:
        assert reply.status == 201
        app = await reply.json()
        assert reply.headers["Location"] == f"{APPS}/{app['application_id']}"
    assert app["name"] == "account-dev"
    assert app["config_filename"] == "app.pipecd.yaml"
    assert app["labels"] == {"env": "dev"}
    assert app["disabled"] is False
    assert app["position"] > 0

    for ref in (app["application_id"], "account-dev"):
        status, got = await call(http, "GET", f"{APPS}/{ref}", min_position=app["position"])
        assert (status, got) == (200, app)


async def test_list_filters_by_name_label_state_and_repository_and_pages_by_name(
    http: aiohttp.ClientSession,
) -> None:
    """GET /applications filters on name, labels (all must match), disabled and repository."""
    await registered(http, "web-dev", labels={"env": "dev", "team": "a"})
    await registered(http, "web-prd", labels={"env": "prd", "team": "a"})
    await registered(http, "api-prd", labels={"env": "prd"}, repository_id="other")
    status, disabled = await call(http, "POST", f"{APPS}/web-dev/disable")
    assert status == 200
    # Every read waits for the last write: reads come from the projection.
    seen = disabled["position"]

    async def names(**params: Any) -> list[str]:
        status, page = await call(http, "GET", APPS, min_position=seen, **params)
        assert status == 200, page
        return [app["name"] for app in page["items"]]

    assert await names() == ["api-prd", "web-dev", "web-prd"]
    assert await names(name="web-prd") == ["web-prd"]
    assert await names(label="env=prd") == ["api-prd", "web-prd"]
    both = [("label", "env=prd"), ("label", "team=a")]
    async with http.get(APPS, params=[*both, ("min_position", str(seen))]) as reply:
        assert [a["name"] for a in (await reply.json())["items"]] == ["web-prd"]
    assert await names(disabled="true") == ["web-dev"]
    assert await names(disabled="false") == ["api-prd", "web-prd"]
    assert await names(repository_id="other") == ["api-prd"]

    status, first = await call(http, "GET", APPS, limit=2, min_position=seen)
    assert [a["name"] for a in first["items"]] == ["api-prd", "web-dev"]
    assert first["next_cursor"] == "web-dev"
    status, rest = await call(http, "GET", APPS, limit=2, cursor=first["next_cursor"])
    assert ([a["name"] for a in rest["items"]], rest["next_cursor"]) == (["web-prd"], None)


async def test_disable_and_enable_round_trip_and_repeat_without_new_events(
    http: aiohttp.ClientSession, store: EventStore
) -> None:
    """Disable/enable answer the new state; repeating one appends nothing and answers the same."""
    app = await registered(http, "web")
    stream = f"application-{app['application_id']}"

    status, disabled = await call(http, "POST", f"{APPS}/web/disable")
    assert (status, disabled["disabled"]) == (200, True)
    assert disabled["position"] > app["position"]
    status, again = await call(http, "POST", f"{APPS}/{app['application_id']}/disable")
    assert (status, again) == (200, disabled)
    assert await store.stream_version(stream) == 1

    status, seen = await call(http, "GET", f"{APPS}/web", min_position=disabled["position"])
    assert seen == disabled

    status, enabled = await call(http, "POST", f"{APPS}/web/enable")
    assert (status, enabled["disabled"]) == (200, False)
    status, seen = await call(http, "GET", f"{APPS}/web", min_position=enabled["position"])
    assert seen == enabled
    assert await store.stream_version(stream) == 2


@pytest.mark.parametrize(
    ("body", "strategy"),
    [
        (None, "auto"),
        ({"strategy": "quick_sync"}, "quick_sync"),
        ({"strategy": "pipeline"}, "pipeline"),
    ],
)
async def test_sync_appends_sync_requested_with_the_strategy(
    http: aiohttp.ClientSession, store: EventStore, body: Any, strategy: str
) -> None:
    """POST …/sync answers 202 with a request id and appends SyncRequested with that strategy."""
    app = await registered(http, "web")
    status, accepted = await call(http, "POST", f"{APPS}/web/sync", body)
    assert status == 202, accepted
    assert accepted["strategy"] == strategy
    assert accepted["application_id"] == app["application_id"]

    recorded = (await store.read_stream(f"application-{app['application_id']}"))[-1]
    assert recorded.global_position == accepted["position"]
    assert recorded.event == SyncRequested(
        application_id=app["application_id"],
        request_id=accepted["request_id"],
        strategy=vocabulary.Strategy(strategy),
        commander="test-admin",
    )


async def test_sync_is_refused_for_disabled_unknown_apps_and_unknown_strategies(
    http: aiohttp.ClientSession,
) -> None:
    """A disabled app answers 409, an unknown one 404, a bad strategy 400 naming `strategy`."""
    await registered(http, "web")
    status, error = await call(http, "POST", f"{APPS}/web/sync", {"strategy": "quick"})
    assert (status, error["error"]["code"], error["error"]["field"]) == (
        400,
        "invalid_request",
        "strategy",
    )
    await call(http, "POST", f"{APPS}/web/disable")
    status, error = await call(http, "POST", f"{APPS}/web/sync")
    assert (status, error["error"]["code"]) == (409, "application_disabled")
    for ref in ("nope", "01hxq3v5k2m8n9p0r4s6t7w8y2", "Not A Name"):
        status, error = await call(http, "POST", f"{APPS}/{ref}/sync")
        assert (status, error["error"]["code"]) == (404, "not_found"), ref


async def test_a_taken_name_is_refused_with_its_holder(http: aiohttp.ClientSession) -> None:
    """Registering a name again answers 409 name_taken naming the application that holds it."""
    first = await registered(http, "web")
    status, error = await call(http, "POST", APPS, body_of("web", path="elsewhere"))
    assert status == 409
    assert error["error"]["code"] == "name_taken"
    assert error["error"]["application_id"] == first["application_id"]


async def test_concurrent_registrations_of_one_name_give_one_201_and_409s(
    http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    """Of several simultaneous registrations of one name, exactly one commits; the rest get 409."""
    answers = await asyncio.gather(
        *(call(http, "POST", APPS, body_of("race", path=f"p{i}")) for i in range(6))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201, 409, 409, 409, 409, 409]
    assert {body["error"]["code"] for status, body in answers if status == 409} == {"name_taken"}
    counts = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE event_type = $1) AS registered, "
        "count(*) FILTER (WHERE event_type = $2) AS reserved FROM events",
        "application_registered",
        "application_name_reserved",
    )
    assert counts is not None and (counts["registered"], counts["reserved"]) == (1, 1)


async def test_a_registration_racing_an_uncommitted_one_waits_for_it_then_gets_409(
    http: aiohttp.ClientSession, store: EventStore, pool: asyncpg.Pool
) -> None:
    """A registration blocked on another's uncommitted name conflicts at its commit, then 409s."""
    holder = new_id()
    async with pool.acquire() as conn:
        other = conn.transaction()
        await other.start()
        await store.append(
            "appname-race",
            new_events([ApplicationNameReserved(name="race", application_id=holder)]),
            expected_version=NO_STREAM,
            conn=conn,
        )
        racing = asyncio.create_task(call(http, "POST", APPS, body_of("race")))
        # The API's insert of the same name version now waits on our uncommitted row.
        # PostgreSQL sends no event for that: poll its activity view.
        await wait_until(
            lambda: pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ),
            within_s=10,
            what="the API's insert waiting on our lock",
        )
        assert not racing.done()
        await other.commit()
    status, error = await racing
    assert (status, error["error"]["code"]) == (409, "name_taken")
    assert error["error"]["application_id"] == holder


async def test_registration_appends_the_name_and_the_application_together(
    http: aiohttp.ClientSession, store: EventStore
) -> None:
    """The name stream and the application stream each get their one event, same id."""
    app = await registered(http, "web")
    (reserved,) = await store.read_stream("appname-web")
    (recorded,) = await store.read_stream(f"application-{app['application_id']}")
    assert reserved.event == ApplicationNameReserved(
        name="web", application_id=app["application_id"]
    )
    assert isinstance(recorded.event, ApplicationRegistered)
    assert reserved.tx_id == recorded.tx_id


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"repository_id": "config", "path": "p"}, "name", "invalid_request"),
        (body_of("Web"), "name", "invalid_request"),
        (body_of("web", path="../etc"), "path", "invalid_request"),
        (body_of("web", repository_id=["x"]), "repository_id", "invalid_request"),
        (body_of("web", config_filename="app.json"), "config_filename", "invalid_request"),
        (body_of("web", labels={"env": "a b"}), "labels", "invalid_request"),
        (body_of("web", owner="me"), "owner", "invalid_request"),
        ("not an object", None, "invalid_request"),
    ],
)
async def test_validation_errors_answer_400_naming_the_field(
    http: aiohttp.ClientSession, body: Any, field: str | None, code: str
) -> None:
    """Malformed registrations answer 400 with the error shape and the field at fault."""
    status, error = await call(http, "POST", APPS, body)
    assert status == 400
    assert error["error"]["code"] == code
    assert error["error"].get("field") == field
    assert error["error"]["message"]


async def test_broken_json_and_bad_query_parameters_answer_400(
    http: aiohttp.ClientSession,
) -> None:
    """Unparsable bodies and malformed query parameters answer 400 naming the problem."""
    async with http.post(APPS, data=b"{", headers={"Content-Type": "application/json"}) as reply:
        assert reply.status == 400
        assert (await reply.json())["error"]["code"] == "invalid_json"
    for params, field in (
        ({"min_position": "-1"}, "min_position"),
        ({"limit": "0"}, "limit"),
        ({"disabled": "maybe"}, "disabled"),
        ({"label": "novalue"}, "label"),
    ):
        status, error = await call(http, "GET", APPS, **params)
        assert (status, error["error"]["field"]) == (400, field), params


async def test_unknown_routes_and_methods_answer_json_errors(http: aiohttp.ClientSession) -> None:
    """No route is a JSON 404, a wrong method a JSON 405 with Allow, an unknown app a 404."""
    status, error = await call(http, "GET", f"{API_PREFIX}/nothing-here")
    assert (status, error["error"]["code"]) == (404, "not_found")
    async with http.delete(APPS) as reply:
        assert reply.status == 405
        assert "POST" in reply.headers["Allow"]
        assert (await reply.json())["error"]["code"] == "method_not_allowed"
    status, error = await call(http, "GET", f"{APPS}/nope")
    assert (status, error["error"]["code"]) == (404, "not_found")


async def test_min_position_waits_a_bounded_time_then_answers_503(
    store: EventStore, projector_store: EventStore, api_pool: asyncpg.Pool
) -> None:
    """With no projector running, a read at a new position answers 503 projection_lagging."""
    async with running_projection(projector_store):
        pass  # installed, then stopped: the view exists but will not move
    async with (
        served_api(store, api_pool, read_wait_s=0.3) as url,
        aiohttp.ClientSession(base_url=url, headers=auth_headers(api_key_for(url))) as http,
    ):
        app = await registered(http, "web")
        async with http.get(APPS, params={"min_position": app["position"]}) as reply:
            assert reply.status == 503
            assert reply.headers["Retry-After"]
            error = (await reply.json())["error"]
        assert (error["code"], error["field"]) == ("projection_lagging", "min_position")
        status, page = await call(http, "GET", APPS)
        assert (status, page["items"]) == (200, [])


async def test_openapi_document_covers_every_route_and_resolves_its_references(
    http: aiohttp.ClientSession,
) -> None:
    """The served OpenAPI 3.1 document matches the routes exactly, and every $ref resolves."""
    status, document = await call(http, "GET", f"{API_PREFIX}/openapi.json")
    assert status == 200
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": API_PREFIX}]

    documented = {
        (method.upper(), path, operation["operationId"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    routed = {(r.method, r.path, r.name) for r in all_routes()}
    assert documented == routed

    text = json.dumps(document)
    for ref in set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text)):
        assert ref in document["components"]["schemas"], ref
    for path, item in document["paths"].items():
        for operation in item.values():
            params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"{([^}]+)}", path)), path


async def test_the_auth_seam_sees_each_routes_access_and_its_principal_becomes_the_actor(
    store: EventStore, api_pool: asyncpg.Pool
) -> None:
    """An auth middleware learns each route's access and its principal is recorded as the actor."""
    seen: list[Access | None] = []

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(required_access(request))
        request[PRINCIPAL] = Principal(name="ci-bot", role="read-write")
        return await handler(request)

    server = ApiServer(create_app(store=store, pool=api_pool, auth=auth), port=0, grace_s=1.0)
    await server.start()
    try:
        async with aiohttp.ClientSession(base_url=server.url) as http:
            app = await registered(http, "web")
            status, _ = await call(http, "POST", f"{APPS}/web/sync")
            assert status == 202
            status, _ = await call(http, "GET", f"{API_PREFIX}/openapi.json")
            assert status == 200
    finally:
        await server.stop()

    assert seen == [Access.WRITE, Access.WRITE, Access.PUBLIC]
    registration, sync = await store.read_stream(f"application-{app['application_id']}")
    assert registration.metadata.actor == sync.metadata.actor == "ci-bot"
    assert isinstance(sync.event, SyncRequested) and sync.event.commander == "ci-bot"
    assert registration.metadata.correlation_id  # the request id
