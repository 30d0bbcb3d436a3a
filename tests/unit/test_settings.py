"""Service settings from the environment: conversion, defaults, and every problem at once."""

from __future__ import annotations

import enum
import os
import socket
from typing import Annotated, Literal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ConfigError
from shared.settings import ServiceSettings, SettingsError, env_key, load_settings

URL = "postgresql://slipway@127.0.0.1:5432/slipway"


class Mode(enum.Enum):
    QUICK = "quick"
    PIPELINE = "pipeline"


class DemoSettings(ServiceSettings, frozen=True, kw_only=True):
    repositories: tuple[str, ...] = ()
    ports: Annotated[tuple[int, ...], msgspec.Meta(min_length=1)] = (80,)
    mode: Mode = Mode.QUICK
    strategy: Literal["threshold", "previous"] = "threshold"
    dry_run: bool = False
    limit: int | None = None
    weights: dict[str, float] = msgspec.field(default_factory=dict)
    api_token: Annotated[str, msgspec.Meta(min_length=8)] = "placeholder"
    poll_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0


def test_only_required_fields_needed() -> None:
    """With just the required variable set, every other field takes its default."""
    settings = load_settings(ServiceSettings, {"SLIPWAY_DATABASE_URL": URL})
    assert settings == ServiceSettings(database_url=URL)
    assert settings.database_schema == "slipway"
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.health_port == 0
    assert settings.log_format == "auto"
    assert settings.shutdown_grace_s == 10.0


def test_field_names_map_to_prefixed_upper_case_keys() -> None:
    """`database_url` is read from `SLIPWAY_DATABASE_URL`, and the prefix can change."""
    assert env_key("database_url") == "SLIPWAY_DATABASE_URL"
    settings = load_settings(ServiceSettings, {"APP_DATABASE_URL": URL}, prefix="APP_")
    assert settings.database_url == URL


def test_values_convert_to_field_types() -> None:
    """Text converts to ints, floats, booleans, tuples, enums, Literals, optionals and JSON."""
    settings = load_settings(
        DemoSettings,
        {
            "SLIPWAY_DATABASE_URL": URL,
            "SLIPWAY_HEALTH_PORT": "9102",
            "SLIPWAY_SHUTDOWN_GRACE_S": "2.5",
            "SLIPWAY_REPOSITORIES": "config, infra ,apps",
            "SLIPWAY_PORTS": "80,443",
            "SLIPWAY_MODE": "pipeline",
            "SLIPWAY_STRATEGY": "previous",
            "SLIPWAY_DRY_RUN": "yes",
            "SLIPWAY_LIMIT": "",
            "SLIPWAY_WEIGHTS": '{"canary": 0.1}',
        },
    )
    assert settings.health_port == 9102
    assert settings.shutdown_grace_s == 2.5
    assert settings.repositories == ("config", "infra", "apps")
    assert settings.ports == (80, 443)
    assert settings.mode is Mode.PIPELINE
    assert settings.strategy == "previous"
    assert settings.dry_run is True
    assert settings.limit is None
    assert settings.weights == {"canary": 0.1}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("1", True), ("On", True), ("false", False), ("0", False), ("NO", False)],
)
def test_booleans_accept_the_usual_spellings(raw: str, expected: bool) -> None:
    """true/false, 1/0, yes/no and on/off, in any case, are booleans."""
    env = {"SLIPWAY_DATABASE_URL": URL, "SLIPWAY_DRY_RUN": raw}
    assert load_settings(DemoSettings, env).dry_run is expected


def test_surrounding_whitespace_is_ignored() -> None:
    """A value padded with spaces (as env files often leave them) still converts."""
    env = {"SLIPWAY_DATABASE_URL": URL, "SLIPWAY_HEALTH_PORT": " 8080 "}
    assert load_settings(ServiceSettings, env).health_port == 8080


def test_every_problem_is_reported_at_once() -> None:
    """One SettingsError names each missing and each malformed key with value and expectation."""
    env = {
        "SLIPWAY_HEALTH_PORT": "eighty",
        "SLIPWAY_LOG_FORMAT": "xml",
        "SLIPWAY_SHUTDOWN_GRACE_S": "-1",
        "SLIPWAY_PORTS": "80,https",
        "SLIPWAY_MODE": "yolo",
        "SLIPWAY_DRY_RUN": "maybe",
        "SLIPWAY_DATABASE_SCHEMA": "Bad-Schema",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(DemoSettings, env)
    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.problems == (
        "SLIPWAY_DATABASE_URL: required, not set",
        "SLIPWAY_DATABASE_SCHEMA='Bad-Schema': expected text matching ^[a-z_][a-z0-9_]{0,62}$",
        "SLIPWAY_HEALTH_PORT='eighty': expected an integer >= -1 and <= 65535",
        "SLIPWAY_LOG_FORMAT='xml': expected one of auto, console, json",
        "SLIPWAY_SHUTDOWN_GRACE_S='-1': expected a number >= 0 and <= 3600",
        "SLIPWAY_PORTS='80,https': expected a comma-separated list of at least 1 items,"
        " each an integer",
        "SLIPWAY_MODE='yolo': expected one of quick, pipeline",
        "SLIPWAY_DRY_RUN='maybe': expected a boolean (true/false, 1/0, yes/no, on/off)",
    )
    assert str(error).startswith("invalid DemoSettings (8 problems):\n  SLIPWAY_DATABASE_URL")
    for problem in error.problems:
        assert problem in str(error)


def test_misspelt_key_is_pointed_out() -> None:
    """A missing required key names a set-but-unknown key that looks like its misspelling."""
    with pytest.raises(SettingsError) as caught:
        load_settings(ServiceSettings, {"SLIPWAY_DATABSE_URL": URL})
    assert caught.value.problems == (
        "SLIPWAY_DATABASE_URL: required, not set (SLIPWAY_DATABSE_URL is set: a misspelling?)",
    )


def test_secret_values_are_not_echoed() -> None:
    """A malformed value of a secret-looking field is named but not shown."""
    env = {"SLIPWAY_DATABASE_URL": URL, "SLIPWAY_API_TOKEN": "hunter2"}
    with pytest.raises(SettingsError) as caught:
        load_settings(DemoSettings, env)
    assert "hunter2" not in str(caught.value)
    assert caught.value.problems == (
        "SLIPWAY_API_TOKEN=<redacted>: expected text of at least 8 characters",
    )


def test_unknown_keys_are_ignored() -> None:
    """Variables that match no field (other services', the harness's) do not fail loading."""
    env = {"SLIPWAY_DATABASE_URL": URL, "SLIPWAY_TEST_NATS_URL": "nats://x", "HOME": "/root"}
    assert load_settings(ServiceSettings, env).database_url == URL


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit mapping, the process environment is read."""
    monkeypatch.setenv("SLIPWAY_DATABASE_URL", URL)
    monkeypatch.setenv("SLIPWAY_LOG_LEVEL", "debug")
    settings = load_settings(ServiceSettings)
    assert (settings.database_url, settings.log_level) == (URL, "debug")


def test_settings_are_frozen() -> None:
    """Settings are read once; nothing can change them afterwards."""
    settings = load_settings(ServiceSettings, {"SLIPWAY_DATABASE_URL": URL})
    with pytest.raises(AttributeError):
        settings.log_level = "debug"  # type: ignore[misc]


def test_instance_defaults_to_host_and_pid() -> None:
    """An empty `service_instance` means `<hostname>-<pid>`; a set one is used as is."""
    default = load_settings(ServiceSettings, {"SLIPWAY_DATABASE_URL": URL})
    assert default.instance == f"{socket.gethostname()}-{os.getpid()}"
    named = load_settings(
        ServiceSettings, {"SLIPWAY_DATABASE_URL": URL, "SLIPWAY_SERVICE_INSTANCE": "planner-0"}
    )
    assert named.instance == "planner-0"


@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_characters=",", blacklist_categories=["Cs"]))
        .map(str.strip)
        .filter(bool),
        min_size=1,
    )
)
def test_comma_separated_lists_round_trip(items: list[str]) -> None:
    """Any items without commas, joined by commas, read back as the same tuple."""
    env = {"SLIPWAY_DATABASE_URL": URL, "SLIPWAY_REPOSITORIES": ",".join(items)}
    assert load_settings(DemoSettings, env).repositories == tuple(items)
