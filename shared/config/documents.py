"""Opening a PipeCD-format config file: its text, its YAML with positions, and its header.

A file is read (UTF-8, a BOM allowed), parsed with positions (`_yaml`) into a
`Document`, and checked for its header: a mapping of `apiVersion`, `kind` and
`spec` only, `apiVersion: pipecd.dev/v1beta1`, and the kind the caller expects.
Each loader (`loader`, `pipe_files`, `control_loader`) starts here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from shared.config._decode import Document
from shared.config._yaml import parse_first_yaml, parse_yaml
from shared.config.errors import ConfigFileError, ConfigWarning
from shared.config.types import _show

API_VERSION: Final = "pipecd.dev/v1beta1"
_HEADER: Final = ("apiVersion", "kind", "spec")
_OTHER_PIPECD_KINDS: Final = frozenset(
    {"TerraformApp", "CloudRunApp", "LambdaApp", "ECSApp", "Application", "CrossplaneApp"}
)


def read_text(path: Path, text: str | None = None) -> str:
    """The file's text (UTF-8, a BOM allowed); unreadable is a ConfigFileError."""
    if text is not None:
        return text
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigFileError(path, 0, 0, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigFileError(path, line, column, "", "not UTF-8 text") from None


def open_document(
    path: Path, text: str | None = None, *, first_document: bool = False
) -> tuple[Document, str]:
    """Parse a file into a Document and check its header; returns it and its `kind`.

    With `first_document` (PipeCD's own files), a stream of several YAML documents
    is read as PipeCD reads it: the first one, and a warning says the rest is ignored.
    """
    if first_document:
        data, located, more = parse_first_yaml(str(path), read_text(path, text))
        doc = Document(str(path), data, located)
        if more is not None:
            doc.warnings.append(
                ConfigWarning(
                    file=str(path),
                    line=more.line,
                    column=more.column,
                    field_path="",
                    message="only the first YAML document of the file is read, as PipeCD "
                    "does; the documents from here on are ignored",
                )
            )
    else:
        doc = Document(str(path), *parse_yaml(str(path), read_text(path, text)))
    if not isinstance(doc.data, dict):
        got = "an empty file" if doc.data is None else _show(doc.data)
        raise doc.error((), f"expected a mapping with apiVersion, kind and spec, got {got}")
    return doc, _kind(doc)


def _kind(doc: Document) -> str:
    data: dict[str, Any] = doc.data
    for key in list(data):
        # Go's encoding/json, which PipeCD decodes with, matches `Kind:` to `kind`.
        header = next((h for h in _HEADER if h.casefold() == key.casefold()), key)
        if header != key and header not in data:
            data[header] = data.pop(key)
            doc.located.keys[header] = doc.located.keys.pop(key, doc.located.position)
            if isinstance(doc.located.items, dict) and key in doc.located.items:
                doc.located.items[header] = doc.located.items.pop(key)
    kind = data.get("kind")
    for key in data:
        if key not in ("apiVersion", "kind", "spec"):
            raise doc.error((key,), f'unknown field "{key}"; known fields: apiVersion, kind, spec')
    if "kind" not in data:
        raise doc.error((), 'missing required field "kind"')
    if not isinstance(kind, str) or not kind:
        raise doc.error(("kind",), f"expected a kind such as KubernetesApp, got {_show(kind)}")
    return kind


def _check_version(doc: Document, expected: str = API_VERSION) -> str:
    version = doc.get(("apiVersion",))
    if not doc.has(("apiVersion",)):
        raise doc.error((), f'missing required field "apiVersion" (expected "{expected}")')
    if version != expected:
        raise doc.error(("apiVersion",), f'expected "{expected}", got {_show(version)}')
    return expected


def _expect_kind(doc: Document, kind: str, expected: str) -> None:
    if kind == expected:
        return
    if kind in _OTHER_PIPECD_KINDS:
        problem = f"{kind} is not supported by Slipway (it deploys KubernetesApp)"
    else:
        problem = f'expected kind "{expected}", got {_show(kind)}'
    raise doc.error(("kind",), problem)


def _spec(doc: Document) -> None:
    """Give a file without `spec` an empty one, as PipeCD does."""
    if doc.get(("spec",)) is None:
        doc.data["spec"] = {}


def check_header(doc: Document, kind: str, expected: str) -> str:
    """Check `apiVersion` and that `kind` is `expected`, default `spec`; the apiVersion."""
    version = _check_version(doc)
    _expect_kind(doc, kind, expected)
    _spec(doc)
    return version
