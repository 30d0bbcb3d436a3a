"""libyaml's parser under PyYAML's composer gives what PyYAML alone gives: data, positions
and errors (`shared.config._yaml`), only faster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.config import ConfigFileError, _yaml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PARSERS: list[Callable[[str, str], Any]] = [
    _yaml.parse_yaml,
    _yaml.parse_first_yaml,
    _yaml.parse_yaml_documents,
]
CONFIG = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: "caf\u00e9 \u4e2d"  # non-ASCII before a value still counts one column each
  labels: {env: prd, team: "a: b"}
  anchors: &base {replicas: 2}
  merged:
    <<: *base
    image: ghcr.io/x:v1
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        with:
          replicas: 10%
      - name: WAIT
        with: {duration: 10s}
  text: |
    line one
    line two
---
second: document
"""
# Each parsed by both, to the same data, positions, or error.
TEXTS = [
    CONFIG,
    "a: 1\nb: [1, 2\n",  # unterminated flow sequence
    "a: 1\n  b: 2\n",  # bad indentation
    "a: *nowhere\n",  # undefined alias
    "a: !!int ten\n",  # a tag that does not fit
    "a: 1\na: 2\n",  # duplicate key (the builder's error)
    "a: \x07\n",  # a control character
    "- - - [x, {y: z}]\n",
    "",
    "---\n...\n",
]


@contextmanager
def only_pyyaml() -> Iterator[None]:
    saved = _yaml._LOADERS
    setattr(_yaml, "_LOADERS", (_yaml._Loader,))  # noqa: B010 - a Final, replaced for a moment
    try:
        yield
    finally:
        setattr(_yaml, "_LOADERS", saved)  # noqa: B010


def outcome(parse: Callable[[str, str], Any], text: str) -> Any:
    try:
        return parse("file.yaml", text)
    except ConfigFileError as exc:
        return ("error", str(exc))


def both(parse: Callable[[str, str], Any], text: str) -> tuple[Any, Any]:
    fast = outcome(parse, text)
    with only_pyyaml():
        return fast, outcome(parse, text)


def test_libyaml_is_used_when_present() -> None:
    assert _yaml._LOADERS[0] is not _yaml._Loader


@pytest.mark.parametrize("parse", PARSERS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("text", TEXTS)
def test_same_result_as_pyyaml(parse: Callable[[str, str], Any], text: str) -> None:
    fast, pyyaml = both(parse, text)
    assert fast == pyyaml


@pytest.mark.parametrize("parse", PARSERS, ids=lambda p: p.__name__)
def test_same_result_for_every_fixture(parse: Callable[[str, str], Any]) -> None:
    files = sorted(FIXTURES.rglob("*.yaml"))
    assert files
    for file in files:
        text = file.read_text()
        fast, pyyaml = both(parse, text)
        assert fast == pyyaml, file


@pytest.mark.parametrize("parse", PARSERS, ids=lambda p: p.__name__)
def test_a_tab_is_refused_as_pyyaml_refuses_it(parse: Callable[[str, str], Any]) -> None:
    # libyaml alone would read both as {"a": "b"}, {"image": "x\ty"}.
    for text in ("a:\tb\n", "image: x\ty\n"):
        fast, pyyaml = both(parse, text)
        assert fast == pyyaml
        assert fast[0] == "error"
        assert "'\\t' that cannot start any token" in fast[1]


def test_a_byte_order_mark_inside_the_text_keeps_pyyaml_columns() -> None:
    # libyaml alone counts the mark as a column: "b\ufeffc" would put 2 at column 6.
    data, located = _yaml.parse_yaml("file.yaml", "a: 1\nb\ufeffc: 2\n")
    assert data == {"a": 1, "b\ufeffc": 2}
    assert located.child("b\ufeffc") == _yaml.Located(_yaml.Position(2, 5))


def test_deep_nesting_is_refused_without_a_crash() -> None:
    with pytest.raises(ConfigFileError, match="nested"):
        _yaml.parse_yaml("file.yaml", "[" * 5000 + "]" * 5000)
