"""Errors and warnings that point into a configuration file.

```
ConfigError                      (shared.errors)
└── ConfigFileError              file:line:column: field.path: what was expected
    └── ConfigFileErrors         several of them, one a line (`.errors`)
```

Every problem found in a file carries where it is (1-based line and column of
the offending key or value), the field path in the document
(`spec.pipeline.stages[0].with.replicas`) and what was expected, so a person
can fix it without reading our code. A problem that is only suspicious (an
option PipeCD would silently ignore) is a `ConfigWarning` kept on the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec

from shared.errors import ConfigError

#: How much of a value read from a file an error message may quote.
EXCERPT_CHARS: Final = 40


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The first line of `text`, cut to `limit` characters: what an error may quote of a file.

    Errors end up in events, and the event log never forgets: a file that
    should not have been read (a secret, a token) must not be copied into it
    whole. A cut excerpt says how long the whole was.
    """
    first, _, rest = text.partition("\n")
    if len(first) <= limit and not rest:
        return first
    return f"{first[: limit // 2]}… ({len(text)} characters)"


def _where(file: str, line: int, column: int, field_path: str) -> str:
    where = f"{file}:{line}:{column}" if line > 0 else file
    return f"{where}: {field_path}" if field_path else where


class ConfigFileError(ConfigError):
    """A configuration file is unreadable, not YAML, or not the expected shape."""

    def __init__(
        self, file: str | Path, line: int, column: int, field_path: str, problem: str
    ) -> None:
        self.file = str(file)
        self.line = line
        self.column = column
        self.field_path = field_path
        self.problem = problem
        super().__init__(f"{_where(self.file, line, column, field_path)}: {problem}")

    @property
    def errors(self) -> tuple[ConfigFileError, ...]:
        """Every problem this error reports (just itself, for a single one)."""
        return (self,)


class ConfigFileErrors(ConfigFileError):
    """Every problem found in a file (or a file and the files it refers to), so a person
    fixes them in one go; it reads as one per line, and has the first one's position."""

    def __init__(self, errors: Sequence[ConfigFileError]) -> None:
        flat = [e for error in errors for e in error.errors]
        assert flat, "ConfigFileErrors needs at least one error"
        first = flat[0]
        super().__init__(first.file, first.line, first.column, first.field_path, first.problem)
        self.args = ("\n".join(str(e) for e in flat),)
        self._errors = tuple(flat)

    def __str__(self) -> str:
        return str(self.args[0])

    @property
    def errors(self) -> tuple[ConfigFileError, ...]:
        """Every error, in file order."""
        return self._errors

    @staticmethod
    def of(errors: Sequence[ConfigFileError]) -> ConfigFileError:
        """One error as itself, several as `ConfigFileErrors`."""
        return errors[0] if len(errors) == 1 else ConfigFileErrors(errors)


class ConfigWarning(msgspec.Struct, frozen=True, kw_only=True):
    """Something accepted for compatibility that is probably a mistake."""

    file: str
    line: int
    column: int
    field_path: str
    message: str

    def __str__(self) -> str:
        return f"{_where(self.file, self.line, self.column, self.field_path)}: {self.message}"
