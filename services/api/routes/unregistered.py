"""`/unregistered-applications`: config files in watched repositories that no application
is registered at (PipeCD's "unregistered applications"), and registering one.

Registering one is `POST /applications` with the repository, directory and file the
gitwatcher found (`routes.applications.register_application`): the same checks, the same
command, the same events; only where the registration's facts come from differs.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from services.api.auth import Access
from services.api.decider import TargetNotFound
from services.api.deps import deps
from services.api.routes import Answer, Route
from services.api.routes.applications import register_application, wait_if_asked
from services.api.schemas import (
    APPLICATIONS_PAGE,
    ApplicationResource,
    ListUnregisteredQuery,
    RegisterApplicationRequest,
    RegisterUnregisteredRequest,
    UnregisteredApplicationList,
)
from services.api.unregistered import PROJECTION, get_unregistered, list_unregistered
from services.api.wire import json_response, query_int, query_str, read_body

__all__ = ["ROUTES", "register_unregistered"]


async def list_(request: web.Request) -> web.Response:
    repository_id = query_str(request, "repository_id")
    after = query_int(request, "cursor", ge=0)
    limit = (
        query_int(request, "limit", ge=1, le=APPLICATIONS_PAGE.maximum) or APPLICATIONS_PAGE.default
    )
    await wait_if_asked(request, PROJECTION)
    items, next_cursor = await list_unregistered(
        deps(request).pool, repository_id=repository_id, after=after, limit=limit
    )
    return json_response(UnregisteredApplicationList(items=items, next_cursor=next_cursor))


async def register(request: web.Request) -> web.Response:
    body = await read_body(request, RegisterUnregisteredRequest, optional=True)
    return await register_unregistered(request, body)


async def register_unregistered(
    request: web.Request, body: RegisterUnregisteredRequest
) -> web.Response:
    """Register the unregistered application `{config}` of the path as `body` says (the
    console's form gives `body` from its fields)."""
    config = request.match_info["config"]
    found = await get_unregistered(deps(request).pool, config)
    if found is None:
        raise TargetNotFound(
            f"no unregistered application {config!r} (registered already, or never discovered)"
        )
    # Untrusted fields (the name, the path) meet `check_registration` there, as any
    # caller's registration does: a 400 names the one at fault.
    registration = RegisterApplicationRequest(
        name=body.name or found.name,
        repository_id=found.repository_id,
        path=found.path,
        config_filename=found.config_filename,
        platform_provider=body.platform_provider,
        labels=body.labels,
        verify=body.verify,
    )
    return await register_application(request, registration)


ROUTES: Final = (
    Route(
        "GET",
        "/unregistered-applications",
        list_,
        "listUnregisteredApplications",
        Access.READ,
        summary="List unregistered applications",
        tag="applications",
        answers=(Answer(200, "A page of unregistered applications.", UnregisteredApplicationList),),
        errors=(400, 503),
        description="Application config files (`app.pipecd.yaml`, `*.pipecd.yaml`, "
        "`.pipe.yaml`) the gitwatcher found in watched repositories that no application is "
        "registered at, in the order they were found, from the `discovered_configs` read "
        "model (eventually consistent: see `min_position`). A registration takes one off "
        "the list; deleting its application puts it back.",
        query=ListUnregisteredQuery,
    ),
    Route(
        "POST",
        "/unregistered-applications/{config}/register",
        register,
        "registerUnregisteredApplication",
        Access.WRITE,
        summary="Register an unregistered application",
        tag="applications",
        answers=(
            Answer(
                201,
                "Registered.",
                ApplicationResource,
                headers={"Location": "The new application's URL."},
            ),
        ),
        errors=(400, 404, 409, 503),
        description="`POST /applications` with the repository, directory and config file "
        "found, named as the config names it unless `name` is given: the same checks and "
        "answers (400 naming the field, e.g. a config's name that is no valid application "
        "name; 409 `name_taken`, `config_taken`). 404 when the id is not an unregistered "
        "application's.",
        body=RegisterUnregisteredRequest,
        body_required=False,
    ),
)
