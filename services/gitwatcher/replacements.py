"""Writing an event's value into a file's text, and where a replacement may write (pure).

The event watcher's edits, PipeCD's `replacements`:

- `yamlField` (`$.spec.template.spec.containers[0].image`): the scalar at that
  path is replaced in place, between its own first and last character, so
  comments, quoting elsewhere, key order and indentation stay byte for byte.
  The value is written as one scalar: in the node's own style when that reads
  back as exactly the value, else double-quoted; the result is parsed again
  and must equal the old document with only that field changed (no YAML
  injection, whatever the value holds). In a file of several documents the
  first one holding the path is changed.
- `jsonField`: the same on a JSON file, the value always a JSON string.
- `regex`: every match's first capture group becomes the value (PipeCD's
  `modifyText`); no match is an error. On a YAML or JSON file the result must
  have the same shape as before (`same_shape`: the same keys and items, only
  scalars changed), so a value cannot add keys through a pattern either.
  The pattern comes from a repository, so it is untrusted: it runs with the
  `regex` package (the `re` dialect) under a time limit, `REGEX_TIME_LIMIT_S`
  seconds of CPU by default, and with the interpreter lock released, so a
  pattern that backtracks catastrophically (`(a|aa)+$` on a long line of `a`s)
  fails its event instead of holding the gitwatcher.
- `HCLField`: refused with a clear error (PipeCD has never implemented it).

Each returns the new text, or None when the file holds the value already.
Errors are `ReplacementError`, naming the file and the field.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any, Final

import regex
import yaml

from shared.errors import Rejected

__all__ = [
    "REGEX_TIME_LIMIT_S",
    "ReplacementError",
    "commit_message",
    "parse_field_path",
    "replace_json_field",
    "replace_regex",
    "replace_yaml_field",
    "repository_path",
    "same_shape",
]

REGEX_TIME_LIMIT_S: Final = 1.0
"""CPU seconds one `regex` replacement may match for, over a whole file (at most
`eventplan.MAX_FILE_BYTES`): a sound pattern needs milliseconds."""
DEFAULT_COMMIT_MESSAGE: Final = "Replace values with {value} set by Event {name}"
_PATH_STEP: Final = re.compile(
    r"""\.(?P<key>[^.\[\]'"]+)|\[(?P<index>\d+)\]|\[(?P<quote>['"])(?P<qkey>.*?)(?P=quote)\]"""
)
_TEMPLATE_FIELD: Final = re.compile(r"\{\{-?\s*\.(Value|EventName)\s*-?\}\}")
_TEMPLATE_ANY: Final = re.compile(r"\{\{.*?\}\}", re.S)

Step = str | int


class ReplacementError(Rejected):
    """A replacement that cannot be applied: a missing field, no match, a path out of the repo."""


def repository_path(base_dir: str, file: str) -> str:
    """The repository path of `file` (relative to `base_dir`, an application's directory, or
    the root); refused when it leaves the repository or is not a plain relative path."""
    if not file or "\0" in file or "\n" in file or "\\" in file:
        raise ReplacementError(f"file {file[:200]!r}: not a usable path")
    if file.startswith("/"):
        raise ReplacementError(f"file {file[:200]!r}: must be relative to the repository")
    joined = posixpath.normpath(posixpath.join(base_dir.strip("/") or ".", file))
    if joined == "." or joined == ".." or joined.startswith(("../", "/")):
        raise ReplacementError(f"file {file[:200]!r}: outside the repository")
    if joined.split("/", 1)[0] == ".git":
        raise ReplacementError(f"file {file[:200]!r}: inside .git")
    return joined


def parse_field_path(field: str) -> list[Step]:
    """`$.a.b[0]['c.d']` as steps: mapping keys (str) and sequence indexes (int)."""
    if not field.startswith("$"):
        raise ReplacementError(f"field {field!r}: a path starts with `$` (the document root)")
    steps: list[Step] = []
    at = 1
    while at < len(field):
        match = _PATH_STEP.match(field, at)
        if match is None:
            raise ReplacementError(f"field {field!r}: cannot read the path at {field[at:]!r}")
        if match["index"] is not None:
            steps.append(int(match["index"]))
        else:
            steps.append(match["key"] if match["key"] is not None else match["qkey"])
        at = match.end()
    if not steps:
        raise ReplacementError(f"field {field!r}: names the whole document, not a field")
    return steps


def replace_yaml_field(text: str, field: str, value: str, *, file: str = "") -> str | None:
    """`text` with the scalar at `field` set to `value`; None if it holds `value` already."""
    return _replace_field(text, field, value, file=file, json_file=False)


def replace_json_field(text: str, field: str, value: str, *, file: str = "") -> str | None:
    """`replace_yaml_field` for a JSON file: the value is always written as a JSON string."""
    return _replace_field(text, field, value, file=file, json_file=True)


def _replace_field(text: str, field: str, value: str, *, file: str, json_file: bool) -> str | None:
    where = f"{file}: {field}" if file else field
    steps = parse_field_path(field)
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ReplacementError(f"{file or 'file'}: not valid YAML/JSON ({exc})") from None
    for number, document in enumerate(documents):
        node = _walk(document, steps)
        if node is None:
            continue
        if not isinstance(node, yaml.ScalarNode):
            raise ReplacementError(f"{where}: is a {_kind(node)}, not a scalar value")
        if node.value == value:
            return None
        start, end = node.start_mark.index, node.end_mark.index
        original = text[start:end]
        trailing = original[len(original.rstrip()) :] if node.style in ("|", ">") else ""
        expected = _expected(text, number, steps, value, json_file=json_file)
        for candidate in _renderings(value, node.style, json_file):
            new = text[:start] + candidate + trailing + text[end:]
            if _loads(new, json_file=json_file) == expected:
                return new
        raise ReplacementError(f"{where}: cannot write {value[:80]!r} as a scalar here")
    raise ReplacementError(f"{where}: no such field")


def _walk(node: yaml.Node | None, steps: list[Step]) -> yaml.Node | None:
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, yaml.SequenceNode) or step >= len(node.value):
                return None
            node = node.value[step]
        else:
            if not isinstance(node, yaml.MappingNode):
                return None
            node = next(
                (
                    v
                    for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value == step and k.tag.endswith(":str")
                ),
                None,
            )
            if node is None:
                return None
    return node


def _kind(node: yaml.Node) -> str:
    return "mapping" if isinstance(node, yaml.MappingNode) else "sequence"


def _renderings(value: str, style: str | None, json_file: bool) -> list[str]:
    quoted = json.dumps(value, ensure_ascii=False)
    if json_file:
        return [quoted]
    if style == "'":
        return ["'" + value.replace("'", "''") + "'", quoted]
    if style is None:
        return [value, quoted]
    return [quoted]


def _loads(text: str, *, json_file: bool) -> Any:
    try:
        if json_file:
            return [json.loads(text)]
        return list(yaml.safe_load_all(text))
    except (yaml.YAMLError, ValueError):
        return _Unreadable()


class _Unreadable:
    """Equal to nothing: a rendering whose result does not parse is never taken."""


def _expected(
    text: str, number: int, steps: list[Step], value: str, *, json_file: bool
) -> list[Any]:
    documents = _loads(text, json_file=json_file)
    if isinstance(documents, _Unreadable):
        raise ReplacementError("the file does not parse")
    target: Any = documents
    path: list[Step] = [number, *steps]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return list(documents)


def replace_regex(
    text: str,
    pattern: str,
    value: str,
    *,
    file: str = "",
    time_limit_s: float = REGEX_TIME_LIMIT_S,
) -> str | None:
    """Every match's first capture group set to `value` (PipeCD's `modifyText`); a pattern
    still matching after `time_limit_s` CPU seconds is refused (ReplacementError)."""
    where = f"{file}: regex {pattern!r}" if file else f"regex {pattern!r}"
    try:
        compiled = regex.compile(pattern)
    except (regex.error, RecursionError, OverflowError) as exc:
        raise ReplacementError(f"{where}: not a valid regular expression ({exc})") from None
    if compiled.groups < 1:
        raise ReplacementError(f"{where}: needs a capture group `(...)`")
    matched = False
    changed = False

    def substitute(match: regex.Match[str]) -> str:
        nonlocal matched, changed
        matched = True
        if match.start(1) < 0 or match[1] == value:
            return str(match[0])
        changed = True
        offset = match.start()
        whole = str(match[0])
        return whole[: match.start(1) - offset] + value + whole[match.end(1) - offset :]

    try:
        # concurrent: the interpreter lock is released while matching, so the event loop
        # (this runs in a worker thread) keeps serving the gitwatcher's other work.
        new = compiled.sub(substitute, text, timeout=time_limit_s, concurrent=True)
    except TimeoutError:
        raise ReplacementError(
            f"{where}: still matching after {time_limit_s:g} s (the time limit of a regex "
            "replacement): the pattern backtracks too much on this file; make it simpler"
        ) from None
    if not matched:
        raise ReplacementError(f"{where}: matches nothing in the file")
    return new if changed else None


def same_shape(old: str, new: str, *, file: str = "") -> None:
    """Refuse `new` unless it parses to the structure `old` has: the same mappings with the
    same keys, the same sequences with as many items; scalars may differ."""
    before, after = _loads(old, json_file=False), _loads(new, json_file=False)
    if isinstance(before, _Unreadable):
        return  # not YAML to begin with (a template): nothing to compare
    if isinstance(after, _Unreadable) or not _shaped_alike(before, after):
        raise ReplacementError(
            f"{file or 'file'}: the replacement would change the document's structure, "
            "not only a value"
        )


def _shaped_alike(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_shaped_alike(a[k], b[k]) for k in a)
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_shaped_alike(x, y) for x, y in zip(a, b, strict=True))
        )
    return not isinstance(b, dict | list)


def commit_message(template: str, *, value: str, event_name: str) -> str:
    """PipeCD's commit message: its default, or `template` with `{{ .Value }}` and
    `{{ .EventName }}` filled in; a template naming anything else is used as written
    (PipeCD's text/template fails on it and falls back to the text)."""
    if not template:
        return DEFAULT_COMMIT_MESSAGE.format(value=_go_quote(value), name=_go_quote(event_name))
    filled = _TEMPLATE_FIELD.sub(
        lambda m: value if m[1] == "Value" else event_name,
        template,
    )
    if _TEMPLATE_ANY.search(_TEMPLATE_FIELD.sub("", template)):
        return template
    return filled


def _go_quote(text: str) -> str:
    """Go's `%q` for the printable one-line strings events carry."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
