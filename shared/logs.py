"""Structured logging: structlog configured once per process, for our code and libraries alike.

Every line carries an ISO UTC timestamp, the level, the logger, the service,
the ids bound for the message being handled (`bind(deployment_id=…)`), and the
`trace_id` / `span_id` of the current OpenTelemetry span, so a log line leads
straight to its trace. A TTY gets the console renderer; anything else (a
container, a pipe, a file) gets one JSON object per line.

Records from the standard library's `logging` (asyncpg, nats-py, aiohttp,
the OpenTelemetry SDK) go through the same processors and renderer, so a
service writes one format to one stream.

Every line is redacted last thing before it is written (`shared.redaction`):
registered secrets and credentials in URLs never reach the stream, whoever
logged them (our code, a library, an exception's text).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import IO, Any, Final

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from shared.errors import ConfigError
from shared.redaction import redact, redact_all
from shared.settings import LogFormat

__all__ = ["bind", "configure_logging", "get_logger", "reset_logging"]

_LEVELS: Final = {"debug", "info", "warning", "error", "critical"}

# The one handler we put on the root logger, so configuring again replaces it
# instead of printing every line twice.
_handler: logging.Handler | None = None
_root_level_before: int | None = None


def configure_logging(
    service: str,
    level: str = "info",
    fmt: LogFormat = "auto",
    *,
    instance: str | None = None,
    stream: IO[str] | None = None,
) -> None:
    """Route structlog and stdlib logging to `stream` (default stderr) at `level`.

    Calling it again replaces the previous configuration.
    """
    global _handler, _root_level_before
    if level.lower() not in _LEVELS:
        raise ConfigError(f"log level {level!r} must be one of {', '.join(sorted(_LEVELS))}")
    if fmt not in ("auto", "json", "console"):
        raise ConfigError(f"log format {fmt!r} must be auto, json or console")
    out = stream if stream is not None else sys.stderr
    console = fmt == "console" or (fmt == "auto" and _isatty(out))

    static = {"service": service} | ({"instance": instance} if instance else {})
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_static(static),
        _add_trace_ids,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]
    # The console renderer formats exceptions itself (and warns if they arrive
    # pre-formatted); JSON needs them as a plain string field.
    # Redacted field by field before JSON escapes them (exceptions formatted first, so
    # their text is redacted too); the console's rendered line, tracebacks included, whole.
    renderer: list[Processor] = (
        [
            # Plain tracebacks: rich ones print local variables (a password among them)
            # wrapped across lines, where no redaction can find them.
            structlog.dev.ConsoleRenderer(
                colors=_isatty(out), exception_formatter=structlog.dev.plain_traceback
            ),
            _redact_rendered,
        ]
        if console
        else [
            structlog.processors.format_exc_info,
            _redact_event,
            structlog.processors.JSONRenderer(),
        ]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    else:
        _root_level_before = root.level
    root.addHandler(handler)
    root.setLevel(level.upper())
    _handler = handler

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: module-level loggers created before this call (and
        # `structlog.testing.capture_logs`) must see the current configuration.
        cache_logger_on_first_use=False,
    )


def reset_logging() -> None:
    """Undo `configure_logging` (for tests): structlog defaults, root logger as it was."""
    global _handler, _root_level_before
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    if _root_level_before is not None:
        root.setLevel(_root_level_before)
    _handler = None
    _root_level_before = None
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A logger named `name` (conventionally the module's `__name__`)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@contextlib.contextmanager
def bind(**ids: object) -> Iterator[None]:
    """Add `ids` (e.g. `deployment_id`, `event_id`) to every line logged inside the block.

    `None` values are left out, so callers can pass optional ids unconditionally.
    The previous values come back on exit, also for nested blocks.
    """
    present = {key: value for key, value in ids.items() if value is not None}
    with structlog.contextvars.bound_contextvars(**present):
        yield


def _add_static(fields: dict[str, str]) -> Processor:
    def add_static(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
        return event_dict

    return add_static


def _add_trace_ids(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # A valid context is enough, recording or not: a span that was sampled out,
    # or a remote parent extracted from NATS headers, still names the trace
    # that the rest of the system logs and exports under.
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(context.span_id))
    return event_dict


def _redact_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return {key: redact_all(_as_json(value)) for key, value in event_dict.items()}


def _as_json(value: Any) -> Any:
    # Anything JSON has no type for is rendered by its text, so that text is what to redact.
    if value is None or isinstance(value, str | bool | int | float | dict | list | tuple):
        return value
    if isinstance(value, set | frozenset):
        return [_as_json(item) for item in value]
    return str(value)


def _redact_rendered(_: WrappedLogger, __: str, rendered: Any) -> Any:
    # The console renderer's output: one string, whatever structlog's types say.
    return redact(rendered) if isinstance(rendered, str) else rendered


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except ValueError:  # a closed stream
        return False
