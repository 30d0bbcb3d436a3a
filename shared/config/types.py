"""Value types of PipeCD's configuration that YAML has no word for.

`Duration` ("10s", "1h30m": Go's `time.ParseDuration` syntax), `Replicas` (an
integer or "N%"), `Percentage` (a traffic weight, 0–100, optionally "N%") and
`Regex` (a commit-message matcher). Each is immutable and hashable; `dec_hook`
builds them while msgspec converts, and a `ValueError` raised here becomes a
located `ConfigFileError` whose message is the one written below, so each says
what was expected. `enc_hook` turns them back into the text they came from.
"""

from __future__ import annotations

import datetime
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

from shared.config.errors import excerpt

__all__ = ["Duration", "Percentage", "Regex", "Replicas", "dec_hook", "enc_hook"]

_NS_PER: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # Go accepts both micro signs
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION: Final = re.compile(r"\+?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART: Final = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_MAX_NS: Final = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds
_DURATION_EXPECTED: Final = 'expected a duration like "10s", "5m" or "1h30m"'


def _show(value: object) -> str:
    if isinstance(value, str):
        # Values come from files that may hold secrets: quote a short excerpt only.
        shown = excerpt(value)
        return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Duration:
    """A non-negative length of time, exact to the nanosecond, written like Go's."""

    __slots__ = ("_ns",)
    _ns: int

    def __init__(self, nanoseconds: int = 0) -> None:
        if nanoseconds < 0:
            raise ValueError("a Duration cannot be negative")
        object.__setattr__(self, "_ns", int(nanoseconds))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Duration is immutable")

    @classmethod
    def of(cls, *, hours: int = 0, minutes: int = 0, seconds: float = 0) -> Duration:
        """A duration from parts (for defaults and tests)."""
        ns = Fraction(hours * 3600 + minutes * 60) * 1_000_000_000
        ns += Fraction(seconds) * 1_000_000_000
        return cls(int(ns))

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse Go duration syntax ("300ms", "1.5h", "2h45m"); raise ValueError if not."""
        raw = text.strip()
        if raw in {"0", "+0"}:
            return cls(0)
        if raw.startswith("-"):
            raise ValueError(f"expected a non-negative duration, got {_show(text)}")
        if not _DURATION.fullmatch(raw):
            raise ValueError(f"{_DURATION_EXPECTED}, got {_show(text)}")
        total = Fraction(0)
        for number, unit in _DURATION_PART.findall(raw):
            total += Fraction(number) * _NS_PER[unit]
        if total > _MAX_NS:
            raise ValueError(f"duration {_show(text)} is too long (at most about 292 years)")
        return cls(int(total))

    @property
    def nanoseconds(self) -> int:
        """The length in nanoseconds, as Go's `time.Duration` holds it."""
        return self._ns

    @property
    def seconds(self) -> float:
        """The length in seconds (fractional)."""
        return self._ns / 1_000_000_000

    def total_seconds(self) -> float:
        """The length in seconds, as `datetime.timedelta.total_seconds` names it."""
        return self.seconds

    @property
    def timedelta(self) -> datetime.timedelta:
        """The length as a `datetime.timedelta` (microsecond precision)."""
        return datetime.timedelta(microseconds=self._ns // 1_000)

    def __bool__(self) -> bool:
        return self._ns != 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and other._ns == self._ns

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Duration):
            return NotImplemented
        return self._ns < other._ns

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Duration):
            return NotImplemented
        return self._ns <= other._ns

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Duration):
            return NotImplemented
        return self._ns > other._ns

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Duration):
            return NotImplemented
        return self._ns >= other._ns

    def __hash__(self) -> int:
        return hash((Duration, self._ns))

    def __repr__(self) -> str:
        return f"Duration({str(self)!r})"

    def __str__(self) -> str:
        """Go's `time.Duration.String()`: "1h30m0s", "1.5s", "250ms", "0s"."""
        ns = self._ns
        if ns == 0:
            return "0s"
        if ns < 1_000_000_000:
            for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
                if ns >= size:
                    return _fraction(ns, size) + unit
        hours, rest = divmod(ns, 3_600_000_000_000)
        minutes, rest = divmod(rest, 60_000_000_000)
        text = _fraction(rest, 1_000_000_000) + "s"
        if hours or minutes:
            text = f"{minutes}m{text}"
        if hours:
            text = f"{hours}h{text}"
        return text


def _fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")


class Replicas:
    """How many pods a variant gets: a number, or a percentage of the primary's."""

    __slots__ = ("_number", "_percentage")
    _number: int
    _percentage: bool

    def __init__(self, number: int, *, is_percentage: bool = False) -> None:
        if number < 0:
            raise ValueError("replicas cannot be negative")
        object.__setattr__(self, "_number", number)
        object.__setattr__(self, "_percentage", is_percentage)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Replicas is immutable")

    @classmethod
    def parse(cls, value: object) -> Replicas:
        """From YAML: 3, "3" or "30%" (PipeCD's forms); raise ValueError otherwise."""
        expected = 'expected an integer or a percentage like "10%"'
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{expected}, got {_show(value)}")
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"{expected}, got a negative number ({value})")
            return cls(value)
        text = value.strip()
        percentage = text.endswith("%")
        digits = text[:-1].strip() if percentage else text
        if not digits.isascii() or not digits.isdigit():
            raise ValueError(f"{expected}, got {_show(value)}")
        return cls(int(digits), is_percentage=percentage)

    @property
    def number(self) -> int:
        """The count, or the percentage when `is_percentage`."""
        return self._number

    @property
    def is_percentage(self) -> bool:
        """Whether it was written as `N%` (of the primary's replicas)."""
        return self._percentage

    def calculate(self, total: int, default: int = 1) -> int:
        """Pods for this variant given the primary's `total` (PipeCD rounds percentages up)."""
        if self._number == 0:
            return default
        if not self._percentage:
            return self._number
        return math.ceil(self._number * total / 100)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Replicas)
            and other._number == self._number
            and other._percentage == self._percentage
        )

    def __hash__(self) -> int:
        return hash((Replicas, self._number, self._percentage))

    def __repr__(self) -> str:
        return f"Replicas({str(self)!r})"

    def __str__(self) -> str:
        return f"{self._number}%" if self._percentage else str(self._number)


class Percentage:
    """A share of traffic, 0 to 100, written `10` or `"10%"`."""

    __slots__ = ("_number", "_suffix")
    _number: int
    _suffix: bool

    def __init__(self, number: int, *, has_suffix: bool = False) -> None:
        if not 0 <= number <= 100:
            raise ValueError("a percentage is between 0 and 100")
        object.__setattr__(self, "_number", number)
        object.__setattr__(self, "_suffix", has_suffix)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Percentage is immutable")

    @classmethod
    def parse(cls, value: object) -> Percentage:
        """From YAML: 10, "10" or "10%"; raise ValueError otherwise."""
        expected = 'expected a percentage from 0 to 100 like 10 or "10%"'
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{expected}, got {_show(value)}")
        if isinstance(value, int):
            number, suffix = value, False
        else:
            text = value.strip()
            suffix = text.endswith("%")
            digits = text[:-1].strip() if suffix else text
            if not digits.isascii() or not digits.isdigit():
                raise ValueError(f"{expected}, got {_show(value)}")
            number = int(digits)
        if not 0 <= number <= 100:
            raise ValueError(f"{expected}, got {_show(value)}")
        return cls(number, has_suffix=suffix)

    @property
    def number(self) -> int:
        """The percentage, 0 to 100."""
        return self._number

    @property
    def has_suffix(self) -> bool:
        """Whether it was written with `%` (kept so the config round-trips as written)."""
        return self._suffix

    def __int__(self) -> int:
        return self._number

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Percentage) and other._number == self._number

    def __hash__(self) -> int:
        return hash((Percentage, self._number))

    def __repr__(self) -> str:
        return f"Percentage({str(self)!r})"

    def __str__(self) -> str:
        return f"{self._number}%" if self._suffix else str(self._number)


class Regex:
    """A regular expression from the config, compiled once; "" means "not set"."""

    __slots__ = ("_compiled", "_pattern")
    _pattern: str
    _compiled: re.Pattern[str] | None

    def __init__(self, pattern: str) -> None:
        compiled = re.compile(pattern) if pattern else None
        object.__setattr__(self, "_pattern", pattern)
        object.__setattr__(self, "_compiled", compiled)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Regex is immutable")

    @classmethod
    def parse(cls, value: object) -> Regex:
        """Compile a pattern from YAML; a bad one is a ValueError the loader places at its line."""
        if not isinstance(value, str):
            raise ValueError(f"expected a regular expression (a string), got {_show(value)}")
        try:
            return cls(value)
        except (re.error, RecursionError, OverflowError, ValueError) as exc:
            raise ValueError(
                f"expected a valid regular expression, got {_show(value)} ({exc})"
            ) from None

    @property
    def pattern(self) -> str:
        """The pattern as written."""
        return self._pattern

    def search(self, text: str) -> re.Match[str] | None:
        """Where the pattern first matches `text`; never matches when the pattern is unset."""
        return self._compiled.search(text) if self._compiled is not None else None

    def __bool__(self) -> bool:
        return bool(self._pattern)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Regex) and other._pattern == self._pattern

    def __hash__(self) -> int:
        return hash((Regex, self._pattern))

    def __repr__(self) -> str:
        return f"Regex({self._pattern!r})"

    def __str__(self) -> str:
        return self._pattern


def _duration(value: object) -> Duration:
    if isinstance(value, str):
        return Duration.parse(value)
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return Duration(0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(
            f'{_DURATION_EXPECTED}, got {_show(value)} (a number needs a unit: "{value}s")'
        )
    raise ValueError(f"{_DURATION_EXPECTED}, got {_show(value)}")


def dec_hook(type_: type, value: Any) -> Any:
    """msgspec decode hook for the value types of this module."""
    if type_ is Duration:
        return _duration(value)
    if type_ is Replicas:
        return Replicas.parse(value)
    if type_ is Percentage:
        return Percentage.parse(value)
    if type_ is Regex:
        return Regex.parse(value)
    raise NotImplementedError(f"no decoder for {type_!r}")


def enc_hook(value: Any) -> Any:
    """msgspec encode hook: write the value types back as the text they were read from."""
    if isinstance(value, Duration | Replicas | Regex):
        return str(value)
    if isinstance(value, Percentage):
        return str(value) if value.has_suffix else value.number
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")
