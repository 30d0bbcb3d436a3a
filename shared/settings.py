"""Service settings: environment variables read once, at start-up, into a frozen Struct.

A field `database_url` is read from `SLIPWAY_DATABASE_URL`. Values are text in
the environment and are converted to the field's type by msgspec (ints,
floats, booleans, enums, Literals, constrained values); sequence fields take
comma-separated items and mapping or Struct fields take JSON. Fields without
a default are required.

Loading never stops at the first problem: every missing or malformed variable
is collected and reported in one `SettingsError`, so an operator fixes a
deployment in one round trip instead of one crash per typo.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from msgspec import Meta
from msgspec import inspect as mi

from shared.db import DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_S, DEFAULT_STATEMENT_TIMEOUT_S
from shared.errors import ConfigError
from shared.eventlog.store import DEFAULT_MAX_EVENT_BYTES
from shared.messaging import DEFAULT_STREAM_MAX_AGE_S, DEFAULT_STREAM_MAX_BYTES
from shared.redaction import is_secret_name, secrets_in_url

__all__ = [
    "LogFormat",
    "LogLevel",
    "ServiceSettings",
    "SettingsError",
    "env_key",
    "load_settings",
    "secret_values",
]

T = TypeVar("T", bound=msgspec.Struct)

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "json", "console"]

DEFAULT_PREFIX: Final = "SLIPWAY_"

_TRUE_WORDS: Final = frozenset({"yes", "on"})
_FALSE_WORDS: Final = frozenset({"no", "off"})


DEFAULT_INBOX_RETENTION_S = 7 * 24 * 3600.0


class ServiceSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every Slipway service needs; a service subclasses it to add its own fields."""

    database_url: str
    database_schema: Annotated[str, Meta(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "slipway"
    database_pool_size: Annotated[int, Meta(ge=1, le=1000)] = 10
    database_statement_timeout_s: Annotated[float, Meta(ge=0, le=86400)] = (
        DEFAULT_STATEMENT_TIMEOUT_S
    )
    """PostgreSQL cancels a statement of this service that runs longer (0: never)."""
    database_idle_in_transaction_timeout_s: Annotated[float, Meta(ge=0, le=86400)] = (
        DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_S
    )
    """PostgreSQL ends a session whose transaction sits idle longer (0: never)."""
    event_max_bytes: Annotated[int, Meta(ge=4096, le=64 * 1024 * 1024)] = DEFAULT_MAX_EVENT_BYTES
    """An append of an event larger than this (payload plus metadata, encoded) fails with
    `EventTooLarge`; keep it well under the NATS servers' `max_payload`."""
    events_stream_max_age_s: Annotated[float, Meta(gt=0, le=365 * 86400)] = DEFAULT_STREAM_MAX_AGE_S
    """How long NATS keeps a relayed event (the replay window; the log keeps everything). A
    consumer further behind than this reads the log over HTTP (`GET /events?after=`)."""
    events_stream_max_bytes: Annotated[int, Meta(ge=1024 * 1024)] = DEFAULT_STREAM_MAX_BYTES
    """The most the events stream stores, oldest events dropped first."""
    nats_url: str = "nats://127.0.0.1:4222"
    """May carry the user and password (`nats://executor:…@nats:4222`); `tls://` requires TLS."""
    nats_user: str = ""
    """The service's own NATS user (overrides one in `nats_url`); see shared/natsauth.py."""
    nats_password: str = ""
    nats_password_file: str = ""
    """A file holding the NATS password (a mounted Secret); instead of `nats_password`."""
    nats_tls_ca_file: str = ""
    """CA bundle that signed the NATS servers' certificates; setting it turns TLS on."""
    nats_tls_cert_file: str = ""
    """Client certificate, for servers that verify clients (`verify: true`); with the key."""
    nats_tls_key_file: str = ""
    subject_prefix: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = "slipway"
    health_host: str = "127.0.0.1"
    health_port: Annotated[int, Meta(ge=-1, le=65535)] = 0
    """0 picks a free port (the bound one is logged); -1 disables the health server."""
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"
    consumer_inbox_retention_s: Annotated[float, Meta(ge=3600)] = DEFAULT_INBOX_RETENTION_S
    """How long a consumer keeps the ids of events it handled (`consumer_inbox`); a
    redelivery older than this would be handled again, so keep it far above any
    redelivery window (back-off is minutes; an outage is waited out, not counted)."""
    shutdown_grace_s: Annotated[float, Meta(ge=0, le=3600)] = 10.0
    """How long in-flight work may take to finish after SIGTERM before it is cancelled."""
    startup_timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    """How long start-up may wait for PostgreSQL and NATS before the service gives up."""
    service_instance: str = ""
    """This replica's name in logs and NATS; empty means `<hostname>-<pid>`."""

    @property
    def instance(self) -> str:
        """This process's instance name: configured, or host and pid."""
        return self.service_instance or f"{socket.gethostname()}-{os.getpid()}"


class SettingsError(ConfigError):
    """One or more settings are missing or malformed; `problems` names each of them."""

    def __init__(self, settings_name: str, problems: tuple[str, ...]) -> None:
        self.settings_name = settings_name
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        lines = "".join(f"\n  {problem}" for problem in problems)
        super().__init__(f"invalid {settings_name} ({count}):{lines}")


def env_key(field_name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The environment variable that holds `field_name`."""
    return f"{prefix}{field_name.upper()}"


def load_settings(
    cls: type[T], env: Mapping[str, str] | None = None, prefix: str = DEFAULT_PREFIX
) -> T:
    """Read `cls` from `env` (default: `os.environ`); raise `SettingsError` naming every problem."""
    environ: Mapping[str, str] = os.environ if env is None else env
    info = mi.type_info(cls)
    if not isinstance(info, mi.StructType):  # pragma: no cover - guarded by the TypeVar bound
        raise TypeError(f"{cls!r} is not a msgspec Struct")
    annotations = {f.name: f.type for f in msgspec.structs.fields(cls)}
    known = {env_key(field.name, prefix) for field in info.fields}
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in info.fields:
        key = env_key(field.name, prefix)
        raw = environ.get(key)
        if raw is None:
            if field.required:
                problems.append(f"{key}: required, not set{_did_you_mean(key, environ, known)}")
            continue
        try:
            values[field.name] = _convert(raw.strip(), annotations[field.name], field.type)
        except (msgspec.ValidationError, msgspec.DecodeError):
            shown = "<redacted>" if _is_secret(field.name) else repr(raw)
            problems.append(f"{key}={shown}: expected {_expected(field.type)}")
    if problems:
        raise SettingsError(cls.__name__, tuple(problems))
    return msgspec.convert(values, type=cls)


def _convert(raw: str, annotation: Any, info: mi.Type) -> Any:
    base = _without_none(info)
    if base is not info and raw in ("", "null", "none"):
        return None
    if isinstance(base, mi.BoolType):
        lowered = raw.lower()
        raw = "true" if lowered in _TRUE_WORDS else "false" if lowered in _FALSE_WORDS else raw
    if isinstance(base, mi.VarTupleType | mi.ListType | mi.SetType | mi.FrozenSetType):
        items = [item.strip() for item in raw.split(",")] if raw else []
        return msgspec.convert(items, type=annotation, strict=False)
    if isinstance(base, mi.DictType | mi.StructType | mi.TypedDictType | mi.DataclassType):
        return msgspec.json.decode(raw, type=annotation, strict=False)
    return msgspec.convert(raw, type=annotation, strict=False)


def _without_none(info: mi.Type) -> mi.Type:
    """`X` for an optional `X | None`; anything else unchanged."""
    if isinstance(info, mi.UnionType):
        others = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(others) == 1 and len(others) < len(info.types):
            return others[0]
    return info


def _expected(info: mi.Type) -> str:
    """What a value of type `info` looks like, in words an operator can act on."""
    base = _without_none(info)
    if base is not info:
        return f"{_expected(base)}, or empty for none"
    match info:
        case mi.BoolType():
            return "a boolean (true/false, 1/0, yes/no, on/off)"
        case mi.IntType():
            return "an integer" + _bounds(info)
        case mi.FloatType():
            return "a number" + _bounds(info)
        case mi.StrType():
            pattern = f" matching {info.pattern}" if info.pattern else ""
            return "text" + _lengths(info, "characters") + pattern
        case mi.LiteralType():
            return "one of " + ", ".join(str(v) for v in info.values)
        case mi.EnumType():
            return "one of " + ", ".join(str(member.value) for member in info.cls)
        case mi.VarTupleType() | mi.ListType() | mi.SetType() | mi.FrozenSetType():
            items = _lengths(info, "items") or " of items"
            return f"a comma-separated list{items}, each {_expected(info.item_type)}"
        case mi.DictType() | mi.StructType() | mi.TypedDictType() | mi.DataclassType():
            return "a JSON object with the right fields"
        case mi.UnionType():
            return " or ".join(_expected(t) for t in info.types)
    return type(info).__name__.removesuffix("Type").lower()


def _bounds(info: mi.IntType | mi.FloatType) -> str:
    parts = [
        f"{op} {value}"
        for op, value in ((">", info.gt), (">=", info.ge), ("<", info.lt), ("<=", info.le))
        if value is not None
    ]
    if info.multiple_of is not None:
        parts.append(f"a multiple of {info.multiple_of}")
    return " " + " and ".join(parts) if parts else ""


def _lengths(info: Any, unit: str) -> str:
    low, high = info.min_length, info.max_length
    if low is None and high is None:
        return ""
    if high is None:
        return f" of at least {low} {unit}"
    if low is None:
        return f" of at most {high} {unit}"
    return f" of {low} to {high} {unit}"


def secret_values(settings: msgspec.Struct) -> list[str]:
    """The secrets among `settings`: secret-named fields' values, credentials in URL fields."""
    found: list[str] = []
    for name in settings.__struct_fields__:
        value = getattr(settings, name)
        if not isinstance(value, str) or not value:
            continue
        if _is_secret(name):
            found.append(value)
        if name.endswith("_url") or "://" in value:
            found += secrets_in_url(value)
    return found


def _is_secret(field_name: str) -> bool:
    # Never echoed back in an error message: an error ends up in logs, and logs are read
    # by more people than secrets should be.
    return is_secret_name(field_name)


def _did_you_mean(key: str, environ: Mapping[str, str], known: set[str]) -> str:
    """A hint when a variable that is set but unknown looks like a misspelling of `key`."""
    candidates = [name for name in environ if name not in known]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.85)
    return f" ({close[0]} is set: a misspelling?)" if close else ""
