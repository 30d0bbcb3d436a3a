"""YAML text → plain data, plus where in the text every key and value starts.

PyYAML composes the node graph (with marks); we build the Python data from it
ourselves so that each value keeps its position (`Located`), merge keys (`<<`)
keep the position of the entry they came from, and a hostile document cannot
hurt us: aliases are expanded by reference and the expanded size is bounded
(no "billion laughs"), recursive aliases and deep nesting are refused,
duplicate keys are an error (silently keeping the last is how typos hide).

Scalars follow YAML 1.1 like PipeCD's go-yaml (so `yes` is true), except
timestamps, which stay strings as they do once PipeCD turns YAML into JSON;
keys are always strings (a key written `1` is the string "1").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import yaml

from shared.config.errors import ConfigFileError, excerpt

__all__ = ["Located", "Position", "parse_first_yaml", "parse_yaml", "parse_yaml_documents"]

MAX_DEPTH: Final = 64
MAX_VALUES: Final = 100_000
_PROBLEM_CHARS: Final = 120
_TIMESTAMP: Final = "tag:yaml.org,2002:timestamp"
_MERGE: Final = "tag:yaml.org,2002:merge"
_STR: Final = "tag:yaml.org,2002:str"
_T = TypeVar("_T")


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no stubs here
    """SafeLoader without the implicit timestamp type."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _fast_loader() -> type[Any] | None:
    """`_Loader` with libyaml's scanner and parser (the bulk of the time) under PyYAML's own
    composer, so that nodes, tags and marks are built by the same Python code; None when
    PyYAML was built without libyaml.

    A stream libyaml refuses is parsed again with `_Loader` (`_parsed`), so every error
    keeps PyYAML's wording and position; the composer's recursion stays Python's, so
    deep nesting is the same `RecursionError` and never a C stack overflow.
    """
    try:
        from yaml.cyaml import CParser
    except ImportError:  # pragma: no cover - PyYAML's wheels include libyaml
        return None

    # PyYAML ships no stubs here.
    class FastLoader(
        yaml.composer.Composer,  # type: ignore[misc]
        CParser,  # type: ignore[misc]
        yaml.constructor.SafeConstructor,  # type: ignore[misc]
        yaml.resolver.Resolver,  # type: ignore[misc]
    ):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)

        def dispose(self) -> None:
            pass

    FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
    return FastLoader


_FAST_LOADER: Final = _fast_loader()
_LOADERS: Final[tuple[type[Any], ...]] = (
    (_FAST_LOADER, _Loader) if _FAST_LOADER is not None else (_Loader,)
)


@dataclass(frozen=True, slots=True)
class Position:
    """1-based line and column in the text."""

    line: int
    column: int


@dataclass(slots=True)
class Located:
    """Where a value starts; for a mapping also its keys, for both containers their items."""

    position: Position
    keys: dict[str, Position] = field(default_factory=dict)
    items: dict[str, Located] | list[Located] | None = None

    def child(self, segment: str | int) -> Located | None:
        if isinstance(segment, int) and isinstance(self.items, list):
            return self.items[segment] if 0 <= segment < len(self.items) else None
        if isinstance(segment, str) and isinstance(self.items, dict):
            return self.items.get(segment)
        return None


def _position(mark: yaml.Mark | None) -> Position:
    if mark is None:
        return Position(1, 1)
    return Position(mark.line + 1, mark.column + 1)


def _offset_position(text: str, offset: int) -> Position:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    return Position(line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


class _Builder:
    def __init__(self, file: str, loader: _Loader, max_values: int = MAX_VALUES) -> None:
        self.file = file
        self.loader = loader
        self.max_values = max_values
        self.done: dict[int, tuple[Any, Located, int]] = {}
        self.building: set[int] = set()

    def fail(self, node: yaml.Node, problem: str) -> ConfigFileError:
        at = _position(node.start_mark)
        return ConfigFileError(self.file, at.line, at.column, "", problem)

    def build(self, node: yaml.Node, depth: int) -> tuple[Any, Located, int]:
        """(value, where, expanded size) of a node; aliases share one result."""
        key = id(node)
        if key in self.done:
            return self.done[key]
        if key in self.building:
            raise self.fail(node, "invalid YAML: an alias refers to a value that contains it")
        if depth > MAX_DEPTH:
            raise self.fail(node, f"invalid YAML: nested more than {MAX_DEPTH} levels deep")
        self.building.add(key)
        try:
            if isinstance(node, yaml.MappingNode):
                result = self._mapping(node, depth)
            elif isinstance(node, yaml.SequenceNode):
                result = self._sequence(node, depth)
            else:
                result = self._scalar(node)
        finally:
            self.building.discard(key)
        if result[2] > self.max_values:
            raise self.fail(
                node, f"invalid YAML: more than {self.max_values} values once aliases expand"
            )
        self.done[key] = result
        return result

    def _scalar(self, node: yaml.Node) -> tuple[Any, Located, int]:
        try:
            value = self.loader.construct_object(node, deep=True)
        except (ValueError, KeyError, TypeError, OverflowError):
            # An explicit tag that does not fit its text, like `!!int abc`.
            raise self.fail(
                node, f"invalid YAML: {excerpt(str(node.value))!r} is not a valid {node.tag}"
            ) from None
        return value, Located(_position(node.start_mark)), 1

    def _sequence(self, node: yaml.SequenceNode, depth: int) -> tuple[Any, Located, int]:
        values: list[Any] = []
        where: list[Located] = []
        size = 1
        for item in node.value:
            value, located, item_size = self.build(item, depth + 1)
            values.append(value)
            where.append(located)
            size += item_size
        return values, Located(_position(node.start_mark), items=where), size

    def _key(self, node: yaml.Node) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "invalid YAML: a mapping key must be a plain string")
        if node.tag == _STR or isinstance(node.value, str):
            return str(node.value)
        raise self.fail(node, "invalid YAML: a mapping key must be a plain string")

    def _mapping(self, node: yaml.MappingNode, depth: int) -> tuple[Any, Located, int]:
        values: dict[str, Any] = {}
        keys: dict[str, Position] = {}
        items: dict[str, Located] = {}
        size = 1
        merged: list[tuple[dict[str, Any], Located]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node, depth))
                continue
            key = self._key(key_node)
            if key in values:
                first = keys[key]
                raise self.fail(
                    key_node,
                    f'invalid YAML: duplicate key "{key}" (first at line {first.line})',
                )
            value, located, item_size = self.build(value_node, depth + 1)
            values[key] = value
            keys[key] = _position(key_node.start_mark)
            items[key] = located
            size += item_size
        for source, where in merged:
            assert isinstance(where.items, dict)
            for key, value in source.items():
                if key not in values:
                    values[key] = value
                    keys[key] = where.keys[key]
                    items[key] = where.items[key]
                    size += 1
        return values, Located(_position(node.start_mark), keys=keys, items=items), size

    def _merge_sources(self, node: yaml.Node, depth: int) -> list[tuple[dict[str, Any], Located]]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out: list[tuple[dict[str, Any], Located]] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise self.fail(source, "invalid YAML: a merge key (<<) takes a mapping")
            value, located, _ = self.build(source, depth + 1)
            out.append((value, located))
        return out


def _parsed(text: str, parse: Callable[[type[Any]], _T]) -> _T:
    """`parse(loader class)` with libyaml's parser; when that fails, with PyYAML's own,
    whose result (its error, mostly) is the answer.

    The two differ on two characters, so a text with either goes to PyYAML alone:
    libyaml takes a tab where PyYAML refuses one (as whitespace after `key:`, inside a
    plain scalar), and counts a byte-order mark inside the text as a column.
    """
    fast = _LOADERS[:-1] if "\t" not in text and "\ufeff" not in text else ()
    for loader_class in fast:
        try:
            return parse(loader_class)
        except (yaml.YAMLError, UnicodeError):
            pass
    return parse(_LOADERS[-1])


def parse_yaml(file: str, text: str) -> tuple[Any, Located]:
    """Parse one YAML document into (data, positions); any problem is a ConfigFileError."""

    def parse(loader_class: type[Any]) -> tuple[Any, Located]:
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, Located(Position(1, 1))
            data, located, _ = _Builder(file, loader).build(node, 0)
            return data, located
        finally:
            loader.dispose()

    with _translated(file, text):
        return _parsed(text, parse)


def parse_first_yaml(file: str, text: str) -> tuple[Any, Located, Position | None]:
    """The first document of a stream, as PipeCD reads a config file (Go's yaml reads only
    the first), and where a second one starts (None when there is none)."""

    def parse(loader_class: type[Any]) -> tuple[Any, Located, Position | None]:
        loader = loader_class(text)
        try:
            node = loader.get_node() if loader.check_node() else None
            if node is None:
                data, located = None, Located(Position(1, 1))
            else:
                data, located, _ = _Builder(file, loader).build(node, 0)
            try:
                following = loader.peek_event()
            except yaml.YAMLError as exc:  # what follows is not read, as in PipeCD
                if loader_class is not _Loader:
                    raise  # where it stops is PyYAML's to say
                return data, located, _position(getattr(exc, "problem_mark", None))
            if isinstance(following, yaml.StreamEndEvent):
                return data, located, None
            return data, located, _position(following.start_mark)
        finally:
            loader.dispose()

    with _translated(file, text):
        return _parsed(text, parse)


def parse_yaml_documents(
    file: str, text: str, *, max_values: int = 10 * MAX_VALUES
) -> list[tuple[Any, Located]]:
    """Every document of a multi-document stream (Kubernetes manifests), empty ones skipped."""

    def parse(loader_class: type[Any]) -> list[tuple[Any, Located]]:
        out: list[tuple[Any, Located]] = []
        loader = loader_class(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    continue
                data, located, _ = _Builder(file, loader, max_values).build(node, 0)
                if data is not None:
                    out.append((data, located))
        finally:
            loader.dispose()
        return out

    with _translated(file, text):
        return _parsed(text, parse)


@contextlib.contextmanager
def _translated(file: str, text: str) -> Iterator[None]:
    """PyYAML's errors (and deep recursion in its composer) as ConfigFileError."""
    try:
        yield
    except yaml.MarkedYAMLError as exc:
        at = _position(exc.problem_mark or exc.context_mark)
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "malformed"
        # PyYAML quotes the text it stumbled on (an alias, a tag): keep that short.
        problem = excerpt(problem, _PROBLEM_CHARS)
        raise ConfigFileError(file, at.line, at.column, "", f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        at = _offset_position(text, exc.position)
        raise ConfigFileError(
            file, at.line, at.column, "", f"invalid YAML: {exc.reason} ({exc.character!r})"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(
            file, 1, 1, "", f"invalid YAML: {excerpt(str(exc), _PROBLEM_CHARS)}"
        ) from None
    except RecursionError:
        raise ConfigFileError(file, 1, 1, "", "invalid YAML: nested too deeply") from None
