"""Masking secrets out of everything Slipway logs or records (DESIGN §14).

The event log can never forget, and service logs are read by more people than
secrets should be, so text that may carry a secret goes through `redact`
before it is written: service logs (a structlog processor, `shared.logs`),
stage logs (`shared.stagelog`), failure reasons of stages, deployments and
plans, and the planner's diff.

Two kinds of knowledge:

- **values**: the secrets themselves, registered with `REDACTOR.add(...)` —
  the control config's credentials at start-up (`shared.config.secrets`), a
  Kubernetes Secret's data and a SCRIPT_RUN stage's `secretEnv` at run time.
  Each value is masked wherever it appears, also percent-encoded, JSON-escaped
  or (for Secret data) base64-encoded, and line by line for multi-line values
  such as keys.
- **patterns**: tokens recognised by their place — a URL's userinfo
  (`https://user:*****@host`), credential query parameters (`token=`,
  `access_token=`, `sig=`, `X-Amz-Signature=`, …), `Authorization`-style
  `Bearer`/`Basic` values and `password=`/`api_key:`-style assignments.

`excerpt` is the one way to quote something from outside (a file, a tool's
stderr, an HTTP body) in an error: redacted first, then made printable and cut
short. `printable` makes text storable and safe for a terminal: NUL (which
PostgreSQL text cannot hold) and other control characters become U+FFFD.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "MASK",
    "REDACTOR",
    "Redactor",
    "excerpt",
    "is_secret_name",
    "printable",
    "redact",
    "redact_all",
    "secrets_in_url",
]

MASK: Final = "*****"
"""What a secret becomes (PipeCD masks Secret data the same way)."""

MIN_SECRET_LENGTH: Final = 4
"""Shorter values are not registered: masking every "ab" would garble every log, and a
secret that short protects nothing anyway."""

_MAX_VALUES: Final = 20_000
"""Run-time values kept (oldest forgotten first); configured ones are never forgotten."""

_LINE_OF_KEY: Final = 16
"""Lines of a multi-line secret (a PEM key) at least this long are masked on their own."""

_SECRET_NAME: Final = re.compile(
    r"(?i)password|passwd|secret|token|credential|private_?key|api_?key|authorization|cookie"
)

# `scheme://user:password@` or `scheme://token@`: the password (or a lone token) is masked.
_USERINFO: Final = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s/?#@:\"'<>]*)"
    r"(?::(?P<password>[^\s/?#@\"'<>]*))?@"
)
# Users that name an account, not a credential (ssh://git@github.com/…).
_PLAIN_USERS: Final = frozenset({"", "git", "ssh", "root", "ubuntu", "oauth2", "x-access-token"})
_QUERY_SECRET: Final = re.compile(
    r"(?i)(?P<key>[?&;][\w.\-]*?(?:token|sig|signature|secret|password|passwd|pwd|key|"
    r"credential|auth|code)=)(?P<value>[^&#\s\"'<>]+)"
)
_AUTH_HEADER: Final = re.compile(r"(?i)\b(?P<key>bearer|basic)\s+(?P<value>[\w.~+/=\-]{8,})")
_ASSIGNMENT: Final = re.compile(
    r"(?i)(?P<key>\b[\w.\-]*(?:password|passwd|secret|token|api_?key|private_?key)"
    r"[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"',;&]+)"
)
# A character that each of the four patterns above needs in a match: `://…@` (userinfo),
# `=` (query secret), whitespace after bearer/basic (auth header), `:` or `=` (assignment).
_PATTERN_CHARS: Final = re.compile(r"[:=@\s]")
# C0 controls but tab, DEL and the C1 range: NUL cannot be stored, the rest can drive a terminal.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


class Redactor:
    """Known secret values, masked wherever they appear, plus the pattern rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: OrderedDict[str, bool] = OrderedDict()  # value -> configured (pinned)
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str, pinned: bool = False, encoded: bool = False) -> None:
        """Register secret `values` (empty and short ones are ignored).

        `pinned` values (the control config's) are never forgotten; `encoded` says each value
        is base64 (a Secret's `data`), so its decoded text is a secret too.
        """
        forms: list[str] = []
        for value in values:
            forms += _forms(value)
            if encoded:
                decoded = _b64decode(value)
                if decoded:
                    forms += _forms(decoded)
        with self._lock:
            changed = False
            for form in forms:
                if len(form) < MIN_SECRET_LENGTH:
                    continue
                known = self._values.get(form)
                if known is None:
                    changed = True
                self._values[form] = bool(known) or pinned
                self._values.move_to_end(form)
            while len(self._values) > _MAX_VALUES:
                oldest = next((v for v, p in self._values.items() if not p), None)
                if oldest is None:
                    break
                del self._values[oldest]
                changed = True
            if changed:
                self._pattern = None

    def add_url(self, url: str, *, pinned: bool = False) -> None:
        """Register the credentials a URL carries (its userinfo password, token parameters)."""
        self.add(*secrets_in_url(url), pinned=pinned)

    def redact(self, text: str) -> str:
        """`text` with every known secret value and every credential pattern masked."""
        if not text:
            return text
        pattern = self._compiled()
        if pattern is not None:
            text = pattern.sub(MASK, text)
        if _PATTERN_CHARS.search(text) is None:
            # Most log fields (ids, hashes, names) can match none of the patterns below:
            # one scan instead of four (a log line costs a dozen fields).
            return text
        text = _USERINFO.sub(_mask_userinfo, text)
        text = _QUERY_SECRET.sub(_mask_value, text)
        text = _AUTH_HEADER.sub(_mask_header, text)
        return _ASSIGNMENT.sub(_mask_value, text)

    def clear(self) -> None:
        """Forget every value (for tests)."""
        with self._lock:
            self._values.clear()
            self._pattern = None

    def _compiled(self) -> re.Pattern[str] | None:
        pattern = self._pattern
        if pattern is not None or not self._values:
            return pattern
        with self._lock:
            if self._pattern is None and self._values:
                # Longest first, so a secret containing another is masked whole.
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, ordered)))
            return self._pattern


REDACTOR: Final = Redactor()
"""The process's redactor: every choke point masks with it, every source registers with it."""


def redact(text: str) -> str:
    """`text` masked by the process's redactor."""
    return REDACTOR.redact(text)


def redact_all(value: Any) -> Any:
    """`value` with every text in it redacted: strings, and those inside mappings and lists
    (which come back as `dict` and `list`); anything else as it is."""
    if isinstance(value, str):
        return REDACTOR.redact(value)
    if isinstance(value, Mapping):
        return {key: redact_all(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_all(item) for item in value]
    return value


def is_secret_name(name: str) -> bool:
    """Whether a field, variable or header called `name` holds a secret by its name."""
    return _SECRET_NAME.search(name) is not None


def printable(text: str) -> str:
    """`text` with NUL and other control characters (not tab) replaced by U+FFFD."""
    return _CONTROL.sub("\ufffd", text)


COMMIT_MESSAGE_CHARS: Final = 16_000
"""Longest commit message an event records (CommitObserved, DeploymentTriggered)."""
REASON_CHARS: Final = 4_000
"""Longest error text or failure reason an event records (plan, stage, provider, delivery)."""
DIFF_CHARS: Final = 64_000
"""Longest rendered drift diff an event records (ApplicationSyncStateChanged)."""
CONFIG_CHARS: Final = 32_000
"""Longest application config file an event records (DeploymentPlanned)."""
DESCRIPTION_CHARS: Final = 2_000
"""Longest application description an event records (ApplicationConfigObserved)."""


def clip(text: str, limit: int) -> str:
    """`text` as is if it has at most `limit` characters, else its start, cut so that the
    result with its note of how much was cut has at most `limit` characters (a `limit`
    shorter than the note gives the note alone).

    The one way an event's text is kept under the store's size cap (`EventTooLarge`);
    clipping a clipped text again changes nothing.
    """
    if len(text) <= limit:
        return text
    # The note for cutting everything is the longest it can be: room for it is always enough.
    kept = max(limit - len(f"… ({len(text)} more characters)"), 0)
    return f"{text[:kept]}… ({len(text) - kept} more characters)"


def excerpt(text: str | bytes, limit: int = 240) -> str:
    """A short, redacted, one-line quote of `text` for an error or a log line.

    Redacted before it is cut, so a secret is never cut into an unmasked piece.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    # Leading spaces kept (indentation means something in YAML and in tool output).
    quoted = printable(
        redact(text.strip("\r\n").rstrip()).replace("\r\n", "\n").replace("\n", " | ")
    )
    return clip(quoted, limit)


def secrets_in_url(url: str) -> list[str]:
    """The credentials in `url`: its userinfo password (or lone token), token parameters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    if parts.password:
        found.append(unquote(parts.password))
    elif parts.username and parts.username not in _PLAIN_USERS:
        found.append(unquote(parts.username))
    for match in _QUERY_SECRET.finditer("?" + parts.query if parts.query else ""):
        found.append(unquote(match.group("value")))
    return found


def _forms(value: str) -> list[str]:
    """How a secret may appear in text: as is, percent-encoded, JSON-escaped, line by line."""
    value = value.strip()
    if not value:
        return []
    forms = [value, quote(value, safe=""), json.dumps(value)[1:-1]]
    lines = [line.strip() for line in value.splitlines()]
    if len(lines) > 1:
        forms += [line for line in lines if len(line) >= _LINE_OF_KEY]
    return list(dict.fromkeys(forms))


def _b64decode(value: str) -> str:
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, user, password = match.group("scheme", "user", "password")
    if password is not None:
        return f"{scheme}{user}:{MASK}@"
    if user.lower() in _PLAIN_USERS:
        return match.group(0)
    return f"{scheme}{MASK}@"


def _mask_value(match: re.Match[str]) -> str:
    if match.group("value").startswith(MASK):  # masked already (by the userinfo rule)
        return match.group(0)
    return f"{match.group('key')}{MASK}"


def _mask_header(match: re.Match[str]) -> str:
    key, value = match.group("key", "value")
    # Only what looks like a credential: "Basic authentication" is prose.
    if key.lower() == "basic":
        credential = ":" in _b64decode(value)
    else:
        credential = len(value) >= 20 or not value.isalpha()
    return f"{key} {MASK}" if credential else match.group(0)
