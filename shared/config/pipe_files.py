"""The repository's shared `.pipe/` files: `kind: AnalysisTemplate` and `kind: EventWatcher`.

`load_analysis_templates` merges every AnalysisTemplate of `<repo>/.pipe/`
(a name defined twice is an error); the application loader uses it to check
the templates an ANALYSIS stage refers to.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Final, Literal, TypeVar

import msgspec

from shared.config._decode import Document
from shared.config._decode import Path as FieldPath
from shared.config.analysis import AnalysisHTTP, AnalysisLog, AnalysisMetrics, AnalysisTemplateSpec
from shared.config.application_checks import check_http, check_metric, check_replacement
from shared.config.discovery import SHARED_DIR, shared_files
from shared.config.documents import check_header, open_document
from shared.config.errors import ConfigWarning
from shared.config.event_watcher import EventWatcherSpec
from shared.config.repo_files import inside_repository, unchanged_since
from shared.errors import ConfigError

__all__ = [
    "AnalysisTemplateConfig",
    "EventWatcherFileConfig",
    "analysis_templates",
    "load_analysis_template",
    "load_analysis_templates",
    "load_event_watcher",
]

_T = TypeVar("_T")


class AnalysisTemplateConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded `kind: AnalysisTemplate` file (from `.pipe/`)."""

    kind: Literal["AnalysisTemplate"]
    api_version: str
    spec: AnalysisTemplateSpec
    path: Path
    warnings: tuple[ConfigWarning, ...] = ()


class EventWatcherFileConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded `kind: EventWatcher` file (from `.pipe/`)."""

    kind: Literal["EventWatcher"]
    api_version: str
    spec: EventWatcherSpec
    path: Path
    warnings: tuple[ConfigWarning, ...] = ()


def load_analysis_template(path: Path, text: str | None = None) -> AnalysisTemplateConfig:
    """Load a `kind: AnalysisTemplate` file."""
    doc, kind = open_document(path, text)
    return _analysis_template(doc, kind, path)


def _analysis_template(doc: Document, kind: str, path: Path) -> AnalysisTemplateConfig:
    version = check_header(doc, kind, "AnalysisTemplate")
    doc.fold_keys(("spec",), AnalysisTemplateSpec)  # keys match as Go's decoder matches them
    spec = doc.convert(("spec",), AnalysisTemplateSpec)
    for name, metric in spec.metrics.items():
        check_metric(doc, ("spec", "metrics", name), metric)
    for name, check in spec.https.items():
        check_http(doc, ("spec", "https", name), check)
    return AnalysisTemplateConfig(
        kind="AnalysisTemplate",
        api_version=version,
        spec=spec,
        path=path,
        warnings=doc.sorted_warnings(),
    )


def load_event_watcher(path: Path, text: str | None = None) -> EventWatcherFileConfig:
    """Load a `kind: EventWatcher` file."""
    doc, kind = open_document(path, text)
    return _event_watcher(doc, kind, path)


def _event_watcher(doc: Document, kind: str, path: Path) -> EventWatcherFileConfig:
    version = check_header(doc, kind, "EventWatcher")
    doc.fold_keys(("spec",), EventWatcherSpec)
    spec = doc.convert(("spec",), EventWatcherSpec)
    for index, event in enumerate(spec.events):
        at: FieldPath = ("spec", "events", index)
        if not event.name:
            raise doc.error((*at, "name"), "required: the event name")
        if not event.replacements:
            raise doc.error((*at, "replacements"), "at least one is required")
        for number, replacement in enumerate(event.replacements):
            check_replacement(doc, (*at, "replacements", number), replacement)
    return EventWatcherFileConfig(
        kind="EventWatcher",
        api_version=version,
        spec=spec,
        path=path,
        warnings=doc.sorted_warnings(),
    )


def load_analysis_templates(repo_root: Path) -> AnalysisTemplateSpec:
    """Every AnalysisTemplate in `<repo_root>/.pipe/`, merged; a name defined twice is an error.

    Remembered by the files' paths and bytes (`_LOADED`): the planner checks the
    templates of every application a commit touches against one checkout.
    """
    key = _files_key(repo_root)
    if key is not None:
        with _LOADED_LOCK:
            if (loaded := _LOADED.get(key)) is not None:
                _LOADED.move_to_end(key)
                return loaded
    loaded = _load_analysis_templates(repo_root)
    if key is not None:
        with _LOADED_LOCK:
            _LOADED[key] = loaded
            while len(_LOADED) > _LOADED_MAX:
                _LOADED.popitem(last=False)
    return loaded


_LOADED_MAX: Final = 16
_LOADED: OrderedDict[tuple[str, tuple[tuple[str, bytes], ...]], AnalysisTemplateSpec] = (
    OrderedDict()
)
_LOADED_LOCK: Final = threading.Lock()  # the analysis service loads them in threads


def _files_key(repo_root: Path) -> tuple[str, tuple[tuple[str, bytes], ...]] | None:
    """What the templates are loaded from: the root, and each `.pipe/` file's path and bytes
    (None when one cannot be read or leads outside: loading them says why). A root declared
    unchanging (`repo_files.unchanging`: a commit's checkout the planner reads every
    application of a push from) is named by its stretch instead of its files' bytes, which
    need not be listed and read again for each application."""
    stretch = unchanged_since(repo_root)
    if stretch is not None:
        return str(repo_root), (("unchanging", str(stretch).encode()),)
    files = []
    try:
        for path in shared_files(repo_root / SHARED_DIR):
            inside_repository(path, repo_root, f"{SHARED_DIR}/{path.name}")
            files.append((str(path), path.read_bytes()))
    except (OSError, ConfigError):
        return None
    return str(repo_root), tuple(files)


def _load_analysis_templates(repo_root: Path) -> AnalysisTemplateSpec:
    metrics: dict[str, AnalysisMetrics] = {}
    logs: dict[str, AnalysisLog] = {}
    https: dict[str, AnalysisHTTP] = {}
    origin: dict[tuple[str, str], str] = {}
    for path in shared_files(repo_root / SHARED_DIR):
        inside_repository(path, repo_root, f"{SHARED_DIR}/{path.name}")
        doc, kind = open_document(path)
        if kind != "AnalysisTemplate":
            continue
        spec = _analysis_template(doc, kind, path).spec
        _merge(doc, "metrics", metrics, spec.metrics, origin)
        _merge(doc, "logs", logs, spec.logs, origin)
        _merge(doc, "https", https, spec.https, origin)
    return AnalysisTemplateSpec(metrics=metrics, logs=logs, https=https)


def _merge(
    doc: Document,
    section: str,
    into: dict[str, _T],
    source: dict[str, _T],
    origin: dict[tuple[str, str], str],
) -> None:
    for name, value in source.items():
        if name in into:
            raise doc.error(
                ("spec", section, name),
                f'{section} template "{name}" is already defined in {origin[section, name]}',
            )
        into[name] = value
        origin[section, name] = doc.file


def analysis_templates(repo_root: Path) -> dict[str, AnalysisMetrics]:
    """The metric templates of the repository's `.pipe/` AnalysisTemplate files, by name."""
    return dict(load_analysis_templates(repo_root).metrics)
