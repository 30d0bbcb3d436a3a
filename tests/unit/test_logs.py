"""Structured logging: JSON or console lines with trace ids, bound ids, and library records."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from shared.errors import ConfigError
from shared.logs import bind, configure_logging, get_logger, reset_logging


class FakeTerminal(io.StringIO):
    """A stream that says it is a TTY."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_the_standard_fields(out: io.StringIO) -> None:
    """A JSON line carries event, fields, level, logger, service and an ISO UTC timestamp."""
    configure_logging("planner", "info", "json", instance="planner-0", stream=out)
    get_logger("slipway.test").info("stage_started", stage="canary")
    [line] = lines(out)
    assert line["event"] == "stage_started"
    assert line["stage"] == "canary"
    assert line["level"] == "info"
    assert line["logger"] == "slipway.test"
    assert (line["service"], line["instance"]) == ("planner", "planner-0")
    assert line["timestamp"].endswith("Z")
    assert "trace_id" not in line


def test_trace_and_span_ids_inside_a_span(out: io.StringIO) -> None:
    """Inside a span, lines carry its trace and span ids as W3C hex."""
    configure_logging("planner", "info", "json", stream=out)
    tracer = TracerProvider().get_tracer(__name__)
    with tracer.start_as_current_span("handle") as span:
        get_logger().info("inside")
    get_logger().info("outside")
    inside, outside = lines(out)
    context = span.get_span_context()
    assert inside["trace_id"] == trace.format_trace_id(context.trace_id)
    assert inside["span_id"] == trace.format_span_id(context.span_id)
    assert len(inside["trace_id"]) == 32
    assert len(inside["span_id"]) == 16
    assert "trace_id" not in outside


def test_bound_ids_appear_and_are_restored(out: io.StringIO) -> None:
    """`bind` adds ids to lines inside the block, skips None, and restores outer values."""
    configure_logging("executor", "info", "json", stream=out)
    log = get_logger()
    with bind(deployment_id="d-1", application_id="a-1"):
        with bind(deployment_id="d-2", event_id=None):
            log.info("inner")
        log.info("outer")
    log.info("after")
    inner, outer, after = lines(out)
    assert (inner["deployment_id"], inner["application_id"]) == ("d-2", "a-1")
    assert "event_id" not in inner
    assert outer["deployment_id"] == "d-1"
    assert "deployment_id" not in after
    assert "application_id" not in after


def test_module_loggers_follow_reconfiguration() -> None:
    """A logger made before configuration, and already used, follows later configurations."""
    early = get_logger("slipway.early")
    configure_logging("executor", "info", "json", stream=io.StringIO())
    early.info("first")
    with structlog.testing.capture_logs() as captured:
        early.info("stage_finished", stage="canary")
    assert captured == [{"event": "stage_finished", "stage": "canary", "log_level": "info"}]


def test_stdlib_logging_is_routed_through_structlog(out: io.StringIO) -> None:
    """Records from stdlib loggers (asyncpg, nats) come out as the same JSON, with ids."""
    configure_logging("relay", "info", "json", stream=out)
    with bind(event_id="e-1"):
        logging.getLogger("nats.aio.client").warning("reconnecting to %s", "nats://x")
    [line] = lines(out)
    assert line["event"] == "reconnecting to nats://x"
    assert (line["level"], line["logger"]) == ("warning", "nats.aio.client")
    assert (line["service"], line["event_id"]) == ("relay", "e-1")


def test_level_filters_both_sources(out: io.StringIO) -> None:
    """Below the configured level nothing is written, from structlog or stdlib."""
    configure_logging("relay", "warning", "json", stream=out)
    get_logger().info("quiet")
    logging.getLogger("asyncpg").info("quiet too")
    get_logger().warning("loud")
    assert [line["event"] for line in lines(out)] == ["loud"]


def test_exceptions_are_a_string_field_in_json(out: io.StringIO) -> None:
    """`log.exception` puts the formatted traceback in an `exception` field."""
    configure_logging("relay", "info", "json", stream=out)
    try:
        raise ValueError("bad payload")
    except ValueError:
        get_logger().exception("handler_failed")
    [line] = lines(out)
    assert line["level"] == "error"
    assert "ValueError: bad payload" in line["exception"]


def test_configuring_twice_is_harmless(out: io.StringIO) -> None:
    """A second configuration replaces the first: one line per event, new level in force."""
    configure_logging("api", "warning", "json", stream=io.StringIO())
    configure_logging("api", "debug", "json", stream=out)
    get_logger().debug("once")
    assert [line["event"] for line in lines(out)] == ["once"]


def test_console_on_a_tty_json_otherwise() -> None:
    """`auto` renders for humans on a TTY and JSON on anything else."""
    terminal = FakeTerminal()
    configure_logging("api", "info", "auto", stream=terminal)
    get_logger().info("hello_human", who="operator")
    text = terminal.getvalue()
    assert "hello_human" in text
    assert "who" in text
    assert not text.lstrip().startswith("{")

    pipe = io.StringIO()
    configure_logging("api", "info", "auto", stream=pipe)
    get_logger().info("hello_machine")
    assert lines(pipe)[0]["event"] == "hello_machine"


def test_bad_level_is_a_config_error() -> None:
    """An unknown level is refused with a ConfigError naming the choices."""
    with pytest.raises(ConfigError, match="verbose"):
        configure_logging("api", "verbose", "json")
