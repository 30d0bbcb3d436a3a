"""The services' event loop: uvloop unless `SLIPWAY_EVENT_LOOP=asyncio` says otherwise."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from shared import eventloop
from shared.settings import ServiceSettings, SettingsError, load_settings


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_services_run_on_uvloop_by_default() -> None:
    settings = load_settings(ServiceSettings, {"SLIPWAY_DATABASE_URL": "postgresql://db/x"})
    assert settings.event_loop == "uvloop"
    assert isinstance(eventloop.run(_running_loop(), settings.event_loop), uvloop.Loop)


def test_asyncio_s_own_loop_on_request() -> None:
    settings = load_settings(
        ServiceSettings,
        {"SLIPWAY_DATABASE_URL": "postgresql://db/x", "SLIPWAY_EVENT_LOOP": "asyncio"},
    )
    loop = eventloop.run(_running_loop(), settings.event_loop)
    assert not isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.BaseEventLoop)


def test_an_unknown_loop_is_a_settings_error_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="SLIPWAY_EVENT_LOOP"):
        load_settings(
            ServiceSettings,
            {"SLIPWAY_DATABASE_URL": "postgresql://db/x", "SLIPWAY_EVENT_LOOP": "trio"},
        )
