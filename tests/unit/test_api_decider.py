"""The api's pure core: given events, when a command, then events or a refusal."""

from __future__ import annotations

import msgspec
import pytest

from services.api.decider import (
    Application,
    DeleteApplication,
    DisableApplication,
    EnableApplication,
    InvalidCommand,
    NameHolder,
    RegisterApplication,
    RequestSync,
    ReserveName,
    StateConflict,
    TargetNotFound,
    decide,
    decide_name,
    evolve,
    evolve_name,
)
from services.api.errors import validation_error
from services.api.schemas import RegisterApplicationRequest
from shared.eventlog.asof import fold
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationDeleted,
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationNameReserved,
    ApplicationRegistered,
    SyncRequested,
)

APP = "01hxq3v5k2m8n9p0r4s6t7w8y2"
REGISTERED = ApplicationRegistered(
    application_id=APP, name="account-dev", repository_id="config", path="account/dev"
)


def register(**changes: object) -> RegisterApplication:
    command = RegisterApplication(
        application_id=APP,
        name="account-dev",
        repository_id="config",
        path="account/dev",
        labels=(("env", "dev"), ("team", "flags")),
    )
    return msgspec.structs.replace(command, **changes)


def given(*events: Event) -> Application | None:
    return fold(evolve, None, events)


def test_register_on_a_fresh_id_records_the_application_with_sorted_labels() -> None:
    """A valid registration of a new id decides one ApplicationRegistered, labels sorted."""
    events = decide(None, register(labels=(("team", "flags"), ("env", "dev"))))
    assert events == [
        ApplicationRegistered(
            application_id=APP,
            name="account-dev",
            repository_id="config",
            path="account/dev",
            labels=(("env", "dev"), ("team", "flags")),
        )
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "Account"}, "name"),
        ({"name": "-web"}, "name"),
        ({"name": "web\n"}, "name"),
        ({"name": "x" * 64}, "name"),
        ({"repository_id": ""}, "repository_id"),
        ({"path": "/abs"}, "path"),
        ({"path": "a/../b"}, "path"),
        ({"path": "a//b"}, "path"),
        ({"path": "a/" * 300 + "a"}, "path"),
        ({"config_filename": "app.json"}, "config_filename"),
        ({"config_filename": "dir/app.yaml"}, "config_filename"),
        ({"platform_provider": "bad provider"}, "platform_provider"),
        ({"labels": (("env", "a b"),)}, "labels"),
        ({"labels": (("", "x"),)}, "labels"),
        ({"labels": (("env", "a"), ("env", "b"))}, "labels"),
        ({"labels": tuple((f"k{i}", "v") for i in range(65))}, "labels"),
    ],
)
def test_register_refuses_a_malformed_field_naming_it(
    changes: dict[str, object], field: str
) -> None:
    """Each malformed registration field is refused as InvalidCommand naming that field."""
    with pytest.raises(InvalidCommand) as refused:
        decide(None, register(**changes))
    assert refused.value.field == field


@pytest.mark.parametrize("path", [".", "account/dev", ".pipe/x", "a.b/c-d_e/@v1+2"])
def test_register_accepts_relative_directories(path: str) -> None:
    """The repository root, nested directories and dot-directories are valid paths."""
    assert len(decide(None, register(path=path))) == 1


def test_register_twice_with_the_same_id_is_a_conflict() -> None:
    """Registering an id that already has an application is refused as already_registered."""
    with pytest.raises(StateConflict) as refused:
        decide(given(REGISTERED), register())
    assert refused.value.code == "already_registered"


def test_disable_and_enable_change_state_once_and_repeat_as_no_ops() -> None:
    """Disable then enable each decide one event; repeating either decides none."""
    state = given(REGISTERED)
    assert decide(state, EnableApplication(application_id=APP)) == []
    assert decide(state, DisableApplication(application_id=APP)) == [
        ApplicationDisabled(application_id=APP)
    ]
    disabled = given(REGISTERED, ApplicationDisabled(application_id=APP))
    assert disabled is not None and disabled.disabled
    assert decide(disabled, DisableApplication(application_id=APP)) == []
    assert decide(disabled, EnableApplication(application_id=APP)) == [
        ApplicationEnabled(application_id=APP)
    ]
    enabled = given(
        REGISTERED, ApplicationDisabled(application_id=APP), ApplicationEnabled(application_id=APP)
    )
    assert enabled is not None and not enabled.disabled


@pytest.mark.parametrize(
    "command",
    [
        DisableApplication(application_id=APP),
        EnableApplication(application_id=APP),
        RequestSync(application_id=APP, request_id="r1"),
    ],
)
def test_commands_on_an_unregistered_application_are_not_found(
    command: DisableApplication | EnableApplication | RequestSync,
) -> None:
    """Disable, enable and sync of an application never registered raise TargetNotFound."""
    with pytest.raises(TargetNotFound):
        decide(None, command)


def test_sync_records_the_request_with_its_strategy_and_commander() -> None:
    """A sync of an enabled application decides SyncRequested carrying id, strategy, commander."""
    command = RequestSync(application_id=APP, request_id="r1", strategy="pipeline", commander="ci")
    assert decide(given(REGISTERED), command) == [
        SyncRequested(
            application_id=APP,
            request_id="r1",
            strategy=vocabulary.Strategy("pipeline"),
            commander="ci",
        )
    ]


def test_sync_of_a_disabled_application_is_a_conflict() -> None:
    """A disabled application refuses syncs with the application_disabled code."""
    state = given(REGISTERED, ApplicationDisabled(application_id=APP))
    with pytest.raises(StateConflict) as refused:
        decide(state, RequestSync(application_id=APP, request_id="r1"))
    assert refused.value.code == "application_disabled"


def test_sync_with_an_unknown_strategy_is_invalid() -> None:
    """A strategy other than auto, quick_sync or pipeline is refused naming `strategy`."""
    with pytest.raises(InvalidCommand) as refused:
        decide(given(REGISTERED), RequestSync(application_id=APP, request_id="r", strategy="quick"))
    assert refused.value.field == "strategy"


def test_a_free_name_is_reserved_and_a_taken_one_names_its_holder() -> None:
    """decide_name reserves a free name; a held one is refused with the holder's id."""
    command = ReserveName(name="account-dev", application_id=APP)
    events = decide_name(None, command)
    assert events == [ApplicationNameReserved(name="account-dev", application_id=APP)]
    holder = fold(evolve_name, None, events)
    assert holder == NameHolder(application_id=APP)
    with pytest.raises(StateConflict) as refused:
        decide_name(holder, ReserveName(name="account-dev", application_id="other"))
    assert (refused.value.code, refused.value.application_id) == ("name_taken", APP)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"repository_id": "r", "path": "p"}', "name"),
        (b'{"name": "Web", "repository_id": "r", "path": "p"}', "name"),
        (b'{"name": "web", "repository_id": 7, "path": "p"}', "repository_id"),
        (b'{"name": "web", "repository_id": "r", "path": "p", "colour": 1}', "colour"),
        (b'{"name": "web", "repository_id": "r", "path": "p", "labels": {"a b": "c"}}', "labels"),
        (b'{"name": "web", "repository_id": "r", "path": "p", "labels": {"a": 1}}', "labels"),
        (b"[]", None),
    ],
)
def test_body_validation_errors_name_the_field(body: bytes, field: str | None) -> None:
    """msgspec's validation messages become 400s naming the request field at fault."""
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(body, type=RegisterApplicationRequest)
    error = validation_error(caught.value)
    assert (error.status, error.detail.code, error.detail.field) == (400, "invalid_request", field)
    if field is not None:
        assert field in error.detail.message


def test_delete_records_the_cascade_and_frees_the_name() -> None:
    """Delete decides one ApplicationDeleted; after it the app is gone and its name free."""
    deleted = ApplicationDeleted(application_id=APP, cascade=True, commander="alice")
    command = DeleteApplication(application_id=APP, cascade=True, commander="alice")
    assert decide(given(REGISTERED), command) == [deleted]
    assert given(REGISTERED, deleted) is None
    with pytest.raises(TargetNotFound):
        decide(given(REGISTERED, deleted), command)
    reserved = ApplicationNameReserved(name="account-dev", application_id=APP)
    assert fold(evolve_name, None, [reserved, deleted]) is None
    other = ApplicationDeleted(application_id="someone-else")
    assert fold(evolve_name, None, [reserved, other]) == NameHolder(application_id=APP)
