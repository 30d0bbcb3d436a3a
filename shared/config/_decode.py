"""Convert located YAML data into msgspec Structs, and say where it went wrong.

msgspec reports a problem as `Expected `int`, got `str` - at `$.pipeline.stages[0]``;
we turn its path back into a position in the file (through `Located`), turn
its wording into "expected an integer, got "ten"", and name the known fields
when a field is unknown. `fold_keys` first spells each key the way its Struct
does when only the case differs, as Go's encoding/json matches keys
(`slackgroups` is `slackGroups`). Below `lenient` paths (a stage's `with:` options, which
PipeCD decodes without rejecting unknown keys) an unknown field is dropped and
recorded as a warning instead, and conversion is retried.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final, Literal, TypeVar, Union, get_args, get_origin

import msgspec

from shared.config._yaml import Located, Position
from shared.config.errors import ConfigFileError, ConfigWarning
from shared.config.types import _show, dec_hook

__all__ = ["WILDCARD", "Document", "Path", "format_path"]

T = TypeVar("T")
Segment = str | int
Path = tuple[Segment, ...]


class _Wildcard:
    """msgspec's `[...]`: some value of a dict, it does not say which."""

    def __repr__(self) -> str:
        return "[...]"


WILDCARD: Final = _Wildcard()
_MISSING: Final = object()
_MAX_RETRIES: Final = 500
_AT_KEY: Final = re.compile(r"^(?P<msg>.*) - at `key` in `(?P<path>\$[^`]*)`$", re.DOTALL)
_AT: Final = re.compile(r"^(?P<msg>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)
_TOKEN: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]|(\[\.\.\.\])")
_EXPECTED: Final = re.compile(
    r"^Expected `(?P<want>[^`]*)`(?P<rest>[^,]*)(?:, got `(?P<got>[^`]*)`)?$"
)
_WORDS: Final = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
    "array": "a list",
    "object": "a mapping",
}


def format_path(path: Sequence[Segment | _Wildcard]) -> str:
    """`("spec", "stages", 0, "with")` → `spec.stages[0].with`."""
    out = ""
    for segment in path:
        if isinstance(segment, int):
            out += f"[{segment}]"
        elif isinstance(segment, _Wildcard):
            out += "[...]"
        elif out:
            out += f".{segment}"
        else:
            out = segment
    return out


def _parse_path(text: str) -> list[Segment | _Wildcard]:
    segments: list[Segment | _Wildcard] = []
    for name, index, wild in _TOKEN.findall(text[1:]):
        if wild:
            segments.append(WILDCARD)
        elif index:
            segments.append(int(index))
        else:
            segments.append(name)
    return segments


def _parse_error(message: str) -> tuple[str, list[Segment | _Wildcard]]:
    if match := _AT_KEY.match(message):
        return match["msg"], _parse_path(match["path"])
    if match := _AT.match(message):
        return match["msg"], _parse_path(match["path"])
    return message, []


def _get(data: Any, path: Sequence[Segment | _Wildcard]) -> Any:
    for segment in path:
        in_list = isinstance(data, list) and isinstance(segment, int) and 0 <= segment < len(data)
        in_dict = isinstance(data, dict) and isinstance(segment, str) and segment in data
        if not (in_list or in_dict):
            return _MISSING
        data = data[segment]
    return data


def _replace(data: Any, path: Sequence[Segment], value: Any) -> Any:
    """A copy of `data` with the value at `path` replaced; copies only along the path."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(data, list) and isinstance(head, int):
        copy_list = list(data)
        copy_list[head] = _replace(data[head], rest, value)
        return copy_list
    if isinstance(data, dict) and isinstance(head, str):
        copy_dict = dict(data)
        copy_dict[head] = _replace(data[head], rest, value)
        return copy_dict
    return data


def _unwrap(tp: Any, value: Any) -> Any:
    """The concrete type a value at `tp` decodes as (Optional, Annotated, tagged unions)."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin is Union or origin is types.UnionType:
            members = [a for a in get_args(tp) if a not in (type(None), msgspec.UnsetType)]
            if len(members) == 1:
                tp = members[0]
                continue
            structs = [m for m in members if _is_struct(m)]
            if structs and isinstance(value, dict):
                tag_field = structs[0].__struct_config__.tag_field
                for member in structs:
                    if tag_field and member.__struct_config__.tag == value.get(tag_field):
                        return member
                return structs[0]
        return tp


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


@functools.cache
def _fields(tp: type[msgspec.Struct]) -> dict[str, Any]:
    """A Struct's fields by their name in a file, and their types. Cached: msgspec evaluates
    the annotations again on every call (`compile` and `eval` of each), which was most of
    loading an application's config (the executor loads one per deployment)."""
    return {f.encode_name: f.type for f in msgspec.structs.fields(tp)}


def _type_at(root: Any, data: Any, path: Sequence[Segment | _Wildcard]) -> Any:
    tp = root
    for segment in path:
        tp = _unwrap(tp, data)
        data = _get(data, [segment]) if not isinstance(segment, _Wildcard) else _MISSING
        if _is_struct(tp):
            by_name = _fields(tp)
            if not isinstance(segment, str) or segment not in by_name:
                return None
            tp = by_name[segment]
        elif get_origin(tp) in (list, tuple):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return _unwrap(tp, data)


def _words(spec: str) -> str:
    return " or ".join(_WORDS.get(part.strip(), part.strip()) for part in spec.split("|"))


class Document:
    """One parsed file: its data, the position of every value, and the warnings so far."""

    def __init__(self, file: str, data: Any, located: Located) -> None:
        self.file = file
        self.data = data
        self.located = located
        self.warnings: list[ConfigWarning] = []

    def get(self, path: Sequence[Segment]) -> Any:
        """The raw value at `path`, or None when absent."""
        value = _get(self.data, path)
        return None if value is _MISSING else value

    def sorted_warnings(self) -> tuple[ConfigWarning, ...]:
        """The warnings in the order of the file."""
        return tuple(sorted(self.warnings, key=lambda w: (w.line, w.column)))

    def has(self, path: Sequence[Segment]) -> bool:
        return _get(self.data, path) is not _MISSING

    def position(self, path: Sequence[Segment | _Wildcard]) -> Position:
        """Where `path` is written: a field's key, an item's start, else its nearest parent."""
        node = self.located
        for index, segment in enumerate(path):
            if isinstance(segment, _Wildcard):
                return node.position
            last = index == len(path) - 1
            if last and isinstance(segment, str) and segment in node.keys:
                return node.keys[segment]
            child = node.child(segment)
            if child is None:
                return node.position
            node = child
        return node.position

    def error(self, path: Sequence[Segment | _Wildcard], problem: str) -> ConfigFileError:
        at = self.position(path)
        return ConfigFileError(self.file, at.line, at.column, format_path(path), problem)

    def warn(self, path: Sequence[Segment], message: str) -> None:
        at = self.position(path)
        self.warnings.append(
            ConfigWarning(
                file=self.file,
                line=at.line,
                column=at.column,
                field_path=format_path(path),
                message=message,
            )
        )

    def fold_keys(self, path: Path, type_: Any) -> None:
        """Respell the keys below `path` that name a field of `type_` in another case.

        PipeCD decodes with Go's encoding/json, which takes a key that matches no
        field exactly for the field it matches case-insensitively; the located
        positions follow, so errors still point at the key as written.
        """
        node = self.located
        for segment in path:
            child = node.child(segment)
            if child is None:
                return
            node = child
        value = self.get(path)
        if value is None:
            return
        folded = _fold(value, node, type_)
        self.data = _replace(self.data, path, folded) if path else folded

    def convert(
        self,
        path: Path,
        type_: type[T],
        *,
        lenient: Callable[[Path], bool] | None = None,
        data: Any = _MISSING,
    ) -> T:
        """Convert the value at `path` (or `data`, positioned at `path`) into `type_`."""
        value = _without_nulls(self.get(path) if data is _MISSING else data)
        for _ in range(_MAX_RETRIES):
            try:
                return msgspec.convert(value, type_, dec_hook=dec_hook)
            except msgspec.ValidationError as exc:
                message, where = _parse_error(str(exc))
                where = _resolve_wildcards(value, type_, where)
                unknown = re.fullmatch(r"Object contains unknown field `(.*)`", message)
                if unknown and lenient is not None:
                    relative = tuple(s for s in where if not isinstance(s, _Wildcard))
                    field_path = (*path, *relative, unknown[1])
                    container = _get(value, relative)
                    if lenient(field_path) and isinstance(container, dict):
                        del container[unknown[1]]
                        self.warn(
                            field_path, self._ignored(type_, value, where, unknown[1], container)
                        )
                        continue
                raise self._explain(path, type_, value, where, message) from None
        raise self.error(path, "too many problems to report")  # pragma: no cover

    def _ignored(
        self,
        root: Any,
        value: Any,
        where: list[Segment | _Wildcard],
        name: str,
        container: dict[str, Any],
    ) -> str:
        stage = container.get("stage")
        of = f" of the {stage} stage" if isinstance(stage, str) else ""
        hint = self._known_fields(root, value, where, name)
        return f'unknown option "{name}"{of} ignored, as PipeCD does{hint}'

    def _known_fields(
        self, root: Any, value: Any, where: list[Segment | _Wildcard], name: str
    ) -> str:
        container = _type_at(root, value, where)
        if not _is_struct(container):
            return ""
        known = list(_fields(container))
        close = difflib.get_close_matches(name, known, n=1) or [
            k for k in known if len(name) >= 3 and k.lower().startswith(name.lower())
        ]
        if close:
            return f'; did you mean "{close[0]}"?'
        if known:
            return "; known fields: " + ", ".join(known)
        return "; this takes no fields"

    def _explain(
        self,
        path: Path,
        root: Any,
        value: Any,
        where: list[Segment | _Wildcard],
        message: str,
    ) -> ConfigFileError:
        full: list[Segment | _Wildcard] = [*path, *where]
        if unknown := re.fullmatch(r"Object contains unknown field `(.*)`", message):
            name = unknown[1]
            hint = self._known_fields(root, value, where, name)
            return self.error([*full, name], f'unknown field "{name}"{hint}')
        if missing := re.fullmatch(r"Object missing required field `(.*)`", message):
            return self.error(full, f'missing required field "{missing[1]}"')
        got = _get(value, where)
        shown = _show(got) if got is not _MISSING else "nothing"
        if enum := re.fullmatch(r"Invalid enum value (.*)", message):
            target = _type_at(root, value, where)
            if get_origin(target) is Literal:
                choices = ", ".join(_show(c) for c in get_args(target) if c != "")
                return self.error(full, f"expected one of {choices}, got {shown}")
            return self.error(full, f"invalid value {enum[1]}")
        if expected := _EXPECTED.match(message):
            text = f"expected {_words(expected['want'])}{expected['rest']}, got {shown}"
            if expected["want"] == "str" and isinstance(got, int | float | bool):
                text += f' (quote it: "{got}")' if not isinstance(got, bool) else ""
            return self.error(full, text)
        return self.error(full, message[:1].lower() + message[1:])


def _fold(value: Any, node: Located | None, tp: Any) -> Any:
    """`value` with its Struct keys spelt as their fields (see `Document.fold_keys`)."""
    tp = _unwrap_known(tp, value)
    if _is_struct(tp) and isinstance(value, dict):
        fields = _fields(tp)
        by_fold = _names_by_fold(tp)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                out[key] = item
                continue
            name: str = key if key in fields else by_fold.get(key.casefold(), key)
            if name != key and name in value:
                name = key  # both spellings are written: leave it to the unknown-field error
            # Most of a config is strings and numbers: nothing below them to fold.
            deeper = name in fields and not _is_leaf(fields[name])
            child = node.child(key) if deeper and node is not None else None
            if name != key and node is not None and key in node.keys:
                node.keys[name] = node.keys.pop(key)
                if isinstance(node.items, dict) and key in node.items:
                    node.items[name] = node.items.pop(key)
            out[name] = _fold(item, child, fields[name]) if deeper else item
        return out
    origin = get_origin(tp)
    if origin in (list, tuple) and isinstance(value, list):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        item_type = args[0] if args else Any
        return [
            _fold(item, node.child(index) if node is not None else None, item_type)
            for index, item in enumerate(value)
        ]
    if origin is dict and isinstance(value, dict):
        item_type = get_args(tp)[1]
        return {
            key: _fold(item, node.child(key) if node is not None else None, item_type)
            for key, item in value.items()
        }
    return value


@functools.cache
def _names_by_fold(tp: type[msgspec.Struct]) -> dict[str, str]:
    """A Struct's field names (as in a file) by their case-folded spelling."""
    return {name.casefold(): name for name in _fields(tp)}


def _is_leaf(tp: Any) -> bool:
    """Whether `_fold` leaves any value at `tp` as it is: no Struct, list or dict can be in
    it (a type it cannot tell, unhashable, is not)."""
    try:
        return _leaf_type(tp)
    except TypeError:
        return False


@functools.cache
def _leaf_type(tp: Any) -> bool:
    origin = get_origin(tp)
    if origin is Annotated:
        return _leaf_type(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return all(_leaf_type(member) for member in get_args(tp))
    if origin in (list, tuple, dict):
        return False
    return not _is_struct(tp)


def _unwrap_known(tp: Any, value: Any) -> Any:
    """`_unwrap`, but a tagged union whose tag is not (yet) written is not guessed."""
    unwrapped = _unwrap(tp, value)
    origin = get_origin(tp)
    if (origin is Union or origin is types.UnionType) and _is_struct(unwrapped):
        tag_field = unwrapped.__struct_config__.tag_field
        if tag_field and not (isinstance(value, dict) and tag_field in value):
            return None
    return unwrapped


def _without_nulls(value: Any) -> Any:
    """Drop null-valued keys: PipeCD (Go's encoding/json) reads `key:` with no value as unset."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _resolve_wildcards(
    value: Any, type_: Any, where: list[Segment | _Wildcard]
) -> list[Segment | _Wildcard]:
    """Name the dict key behind each `[...]` by converting with one entry at a time."""
    while WILDCARD in where:
        index = where.index(WILDCARD)
        prefix = [s for s in where[:index] if not isinstance(s, _Wildcard)]
        container = _get(value, prefix)
        if not isinstance(container, dict):
            return where
        culprit: str | None = None
        for key in container:
            trial = _replace(value, prefix, {key: container[key]})
            try:
                msgspec.convert(trial, type_, dec_hook=dec_hook)
            except msgspec.ValidationError as exc:
                _, trial_where = _parse_error(str(exc))
                if trial_where[: index + 1] == [*prefix, WILDCARD]:
                    culprit = key
                    break
        if culprit is None:
            return where
        where = [*prefix, culprit, *where[index + 1 :]]
    return where
