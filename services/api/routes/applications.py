"""`/applications`: register, list, get, disable, enable, sync."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from services.api import reads, resources
from services.api.auth import Access, actor_of
from services.api.decider import (
    AdoptApplication,
    Command,
    DeleteApplication,
    DisableApplication,
    EnableApplication,
    RegisterApplication,
    RequestSync,
    TargetNotFound,
    check_registration,
)
from services.api.deps import deps
from services.api.errors import ErrorReply
from services.api.middleware import REQUEST_ID
from services.api.registration import check_registration_target, check_syncable
from services.api.routes import API_PREFIX, Answer, Route
from services.api.schemas import (
    APPLICATIONS_PAGE,
    SYNC_STATES,
    AdoptApplicationRequest,
    ApplicationAdoption,
    ApplicationDeletion,
    ApplicationList,
    ApplicationResource,
    DeleteApplicationQuery,
    GetApplicationQuery,
    ListApplicationsQuery,
    RegisterApplicationRequest,
    SyncAccepted,
    SyncApplicationRequest,
)
from services.api.service import Outcome
from services.api.wire import (
    json_response,
    query_bool,
    query_int,
    query_labels,
    query_str,
    read_body,
)
from shared.errors import Unavailable
from shared.eventlog.envelope import envelope
from shared.events.base import Metadata
from shared.events.catalog import SyncRequested
from shared.events.ids import on_command_deployment_id
from shared.events.streams import application_stream
from shared.ids import new_id
from shared.logs import bind
from shared.snapshots import read_state
from shared.stream_folds import APPLICATION

__all__ = ["ROUTES", "register_application", "wait_if_asked"]


async def register(request: web.Request) -> web.Response:
    return await register_application(request, await read_body(request, RegisterApplicationRequest))


async def register_application(
    request: web.Request, body: RegisterApplicationRequest
) -> web.Response:
    """Register what `body` says: 201 the application. The one way to register, whether the
    caller wrote the registration or named an unregistered application (`unregistered`)."""
    api = deps(request)
    command = RegisterApplication(
        application_id=new_id(),
        name=body.name,
        repository_id=body.repository_id,
        path=body.path,
        config_filename=body.config_filename,
        platform_provider=body.platform_provider,
        labels=tuple(sorted(body.labels.items())),
    )
    # The shape first (a 400 names the field before any git fetch), then the world.
    check_registration(command)
    await check_registration_target(api, body)
    with bind(application_id=command.application_id):
        outcome = await api.commands.register(command, metadata_of(request))
    resource = await _resource(request, outcome)
    return json_response(
        resource,
        status=201,
        headers={"Location": f"{API_PREFIX}/applications/{resource.application_id}"},
    )


async def list_(request: web.Request) -> web.Response:
    # Every parameter is checked before waiting, so a malformed one fails fast.
    wanted = reads.ApplicationFilter(
        name=query_str(request, "name"),
        labels=query_labels(request),
        disabled=query_bool(request, "disabled"),
        repository_id=query_str(request, "repository_id"),
        sync_states=_sync_states(request),
    )
    after = query_str(request, "cursor")
    limit = (
        query_int(request, "limit", ge=1, le=APPLICATIONS_PAGE.maximum) or APPLICATIONS_PAGE.default
    )
    await wait_if_asked(request)
    items, next_cursor = await reads.list_applications(
        deps(request).pool, wanted, after=after, limit=limit
    )
    return json_response(ApplicationList(items=items, next_cursor=next_cursor))


def _sync_states(request: web.Request) -> tuple[str, ...] | None:
    """`sync_state` (repeated or comma-separated, any case); None when not given."""
    raw = request.query.getall("sync_state", [])
    if not raw:
        return None
    states = tuple(s.strip().upper() for item in raw for s in item.split(",") if s.strip())
    unknown = sorted(set(states) - set(SYNC_STATES))
    if unknown or not states:
        given = ", ".join(unknown) or "an empty value"
        raise ErrorReply(
            400,
            "invalid_request",
            f"sync_state must be among {', '.join(SYNC_STATES)}, not {given}",
            field="sync_state",
        )
    return states


async def get(request: web.Request) -> web.Response:
    await wait_if_asked(request)
    ref = request.match_info["application"]
    found = await reads.get_application(deps(request).pool, ref)
    if found is None:
        raise TargetNotFound(f"no application with the id or name {ref!r}")
    return json_response(found)


async def disable(request: web.Request) -> web.Response:
    return await _change(request, lambda app_id: DisableApplication(application_id=app_id))


async def enable(request: web.Request) -> web.Response:
    return await _change(request, lambda app_id: EnableApplication(application_id=app_id))


async def sync(request: web.Request) -> web.Response:
    body = await read_body(request, SyncApplicationRequest, optional=True)
    api = deps(request)
    commands = api.commands
    application_id = await commands.resolve(request.match_info["application"])
    folded = (await read_state(api.store, application_stream(application_id), APPLICATION)).state
    app = folded.application if folded is not None else None
    if app is not None:
        check_syncable(api, app)
    command = RequestSync(
        application_id=application_id,
        request_id=new_id(),
        strategy=body.strategy,
        commander=actor_of(request) or "",
    )
    with bind(application_id=application_id):
        outcome = await commands.execute(command, metadata_of(request))
    (recorded,) = outcome.appended
    assert isinstance(recorded.event, SyncRequested)
    return json_response(
        SyncAccepted(
            request_id=recorded.event.request_id,
            application_id=application_id,
            deployment_id=on_command_deployment_id(application_id, recorded.event.request_id),
            strategy=body.strategy,
            position=recorded.global_position,
        ),
        status=202,
    )


async def adopt(request: web.Request) -> web.Response:
    body = await read_body(request, AdoptApplicationRequest)
    commands = deps(request).commands
    application_id = await commands.resolve(request.match_info["application"])
    command = AdoptApplication(
        application_id=application_id,
        running_commit_hash=body.running_commit_hash,
        resources=tuple(body.resources),
        pipecd_application_id=body.pipecd_application_id,
        commander=actor_of(request) or "",
    )
    with bind(application_id=application_id):
        outcome = await commands.execute(command, metadata_of(request))
    (recorded,) = outcome.appended
    return json_response(
        ApplicationAdoption(
            application_id=application_id,
            running_commit_hash=body.running_commit_hash,
            resources=sorted(body.resources),
            position=recorded.global_position,
        )
    )


async def delete(request: web.Request) -> web.Response:
    cascade = query_bool(request, "cascade") or False
    commands = deps(request).commands
    application_id = await commands.resolve(request.match_info["application"])
    command = DeleteApplication(
        application_id=application_id, cascade=cascade, commander=actor_of(request) or ""
    )
    with bind(application_id=application_id):
        outcome = await commands.delete(command, metadata_of(request))
    before = resources.from_record(outcome.before)
    (recorded,) = outcome.appended
    return json_response(
        ApplicationDeletion(
            application_id=application_id,
            name=before.name if before is not None else "",
            cascade=cascade,
            position=recorded.global_position,
        )
    )


async def _change(request: web.Request, make: Callable[[str], Command]) -> web.Response:
    commands = deps(request).commands
    application_id = await commands.resolve(request.match_info["application"])
    with bind(application_id=application_id):
        outcome = await commands.execute(make(application_id), metadata_of(request))
    return json_response(await _resource(request, outcome))


async def _resource(request: web.Request, outcome: Outcome) -> ApplicationResource:
    resource = resources.from_record(outcome.after)
    assert resource is not None, "a command that succeeded leaves a registered application"
    try:
        current = await reads.get_application(deps(request).pool, resource.application_id)
    except Unavailable:
        # The write is done: answer it without what only the read model knows.
        return resource
    return resources.from_record(outcome.after, current) or resource


def metadata_of(request: web.Request) -> Metadata:
    """The envelope of what a request appends: caused by a command, correlated by request id."""
    return envelope(
        actor=actor_of(request),
        correlation_id=request.get(REQUEST_ID),
        occurred_at=datetime.now(UTC),
    )


async def wait_if_asked(request: web.Request, projection: str = reads.PROJECTION) -> None:
    """Wait until `projection` has applied the request's `min_position`, if it gives one."""
    position = query_int(request, "min_position", ge=0)
    if position:
        api = deps(request)
        await reads.wait_for_position(
            api.pool, position, timeout_s=api.read_wait_s, projection=projection
        )


def _command(path: str, handler: Handler, name: str, summary: str, description: str) -> Route:
    """Disable / enable: the application as the command left it."""
    return Route(
        "POST",
        path,
        handler,
        name,
        Access.WRITE,
        summary=summary,
        tag="applications",
        answers=(Answer(200, "The application, as the command left it.", ApplicationResource),),
        errors=(400, 404, 409, 503),
        description=description,
    )


ROUTES: Final = (
    Route(
        "POST",
        "/applications",
        register,
        "registerApplication",
        Access.WRITE,
        summary="Register an application",
        tag="applications",
        answers=(
            Answer(
                201,
                "Registered.",
                ApplicationResource,
                headers={"Location": "The new application's URL."},
            ),
        ),
        errors=(400, 409, 503),
        description="Names are unique: registering a taken name answers 409 "
        "`name_taken` with the holder's id in `error.application_id`; so are config "
        "files: a second application on the same repository, path and config file "
        "answers 409 `config_taken`. With a control config, a repository or platform "
        "provider it does not have answers 400 naming the field, and so does a config "
        "file missing at the watched branch's head (unless `verify` is false).",
        body=RegisterApplicationRequest,
    ),
    Route(
        "GET",
        "/applications",
        list_,
        "listApplications",
        Access.READ,
        summary="List applications",
        tag="applications",
        answers=(Answer(200, "A page of applications.", ApplicationList),),
        errors=(400, 503),
        description="Ordered by name, from the `applications` read model, which is "
        "eventually consistent: pass `min_position` to see a write of yours.",
        query=ListApplicationsQuery,
    ),
    Route(
        "GET",
        "/applications/{application}",
        get,
        "getApplication",
        Access.READ,
        summary="Get an application by id or name",
        tag="applications",
        answers=(Answer(200, "The application.", ApplicationResource),),
        errors=(400, 404, 503),
        description="From the eventually consistent read model; see `min_position`.",
        query=GetApplicationQuery,
    ),
    Route(
        "DELETE",
        "/applications/{application}",
        delete,
        "deleteApplication",
        Access.ADMIN,
        summary="Delete an application",
        tag="applications",
        answers=(Answer(200, "Deleted.", ApplicationDeletion),),
        errors=(400, 404, 503),
        description="Records `ApplicationDeleted` and frees the name. With "
        "`cascade=true` the drift service deletes the live resources Slipway applied "
        "for it (label `slipway.dev/application`) and records the outcome on stream "
        "`drift-<application_id>`: `application_resources_deleted` (what it deleted) or "
        "`application_resources_deletion_failed` (reason, what is left; it retries); "
        "without, they keep running.",
        query=DeleteApplicationQuery,
    ),
    _command(
        "/applications/{application}/disable",
        disable,
        "disableApplication",
        "Disable an application",
        "It is no longer deployed. Disabling a disabled application changes nothing.",
    ),
    _command(
        "/applications/{application}/enable",
        enable,
        "enableApplication",
        "Enable an application",
        "Enabling an enabled application changes nothing.",
    ),
    Route(
        "POST",
        "/applications/{application}/adoption",
        adopt,
        "adoptApplication",
        Access.ADMIN,
        summary="Record that the application took over PipeCD's objects",
        tag="applications",
        answers=(Answer(200, "Adopted.", ApplicationAdoption),),
        errors=(400, 404, 503),
        description="`slipway app import` calls it once it has labelled the objects and "
        "handed their client-side-apply fields to Slipway's field manager. Records "
        "`application_adopted`: the planner takes `running_commit_hash` as the running "
        "commit, so the next deployment is planned against it (pipeline, analysis, "
        "rollback) as PipeCD's would be, not as a first QUICK_SYNC.",
        body=AdoptApplicationRequest,
    ),
    Route(
        "POST",
        "/applications/{application}/sync",
        sync,
        "syncApplication",
        Access.WRITE,
        summary="Deploy the branch head now",
        tag="applications",
        answers=(Answer(202, "Sync requested.", SyncAccepted),),
        errors=(400, 404, 409, 503),
        description="Records a sync request; the gitwatcher turns it into a "
        "deployment of the watched branch's head. A disabled application answers 409 "
        "`application_disabled`; one whose repository is not in the control config "
        "(nothing watches it) answers 409 `repository_not_watched`.",
        body=SyncApplicationRequest,
        body_required=False,
    ),
)
