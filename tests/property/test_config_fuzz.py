"""Property tests: whatever the input, the config loaders raise nothing but ConfigFileError."""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import ConfigFileError, load_any, load_application_config
from tests.support.paths import COMPAT, CONFIG_FIXTURES

FIXTURES = CONFIG_FIXTURES

FUZZ = settings(
    # More in a soak run: SLIPWAY_FUZZ_EXAMPLES=5000 pytest tests/property/test_config_fuzz.py
    max_examples=int(os.environ.get("SLIPWAY_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _seed_files() -> list[Path]:
    files = sorted(FIXTURES.rglob("*.pipecd.yaml")) + sorted(FIXTURES.rglob(".pipe.yaml"))
    files += sorted((FIXTURES / "repo" / ".pipe").glob("*.yaml"))
    files += sorted((FIXTURES / "control").glob("*.yaml"))
    if COMPAT.is_dir():
        files += sorted(COMPAT.rglob("app.pipecd.yaml")) + sorted((COMPAT / ".pipe").glob("*.yaml"))
    return files


SEEDS = [(p.name, p.read_text()) for p in _seed_files()]
SEED_DATA = [yaml.safe_load(text) for _, text in SEEDS]


def _load(text: str, name: str = "fuzz.pipecd.yaml") -> None:
    error: ConfigFileError | None = None
    try:
        load_any(Path(name), text)
    except ConfigFileError as exc:
        error = exc
    if error is not None:
        assert error.file == name
        assert error.problem
        lines = text.count("\n") + text.count("\r") + 2
        assert 1 <= error.line <= lines, (error.line, lines, str(error))
        assert error.column >= 1


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["10s", "10%", "ten", "1h30m", "-5m", "K8S_SYNC", "WAIT", "([", "*", ""]),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, (*prefix, index))


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = data
    for segment in path[:-1]:
        parent = parent[segment]
    parent[path[-1]] = value
    return data


@FUZZ
@given(st.text(max_size=400))
def test_random_text_only_raises_config_file_error(text: str) -> None:
    """Arbitrary text loads or fails with a located ConfigFileError."""
    _load(text)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_config_file_error(data: bytes) -> None:
    """Arbitrary bytes read from disk load or fail with a ConfigFileError."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "app.pipecd.yaml"
        path.write_bytes(data)
        error: ConfigFileError | None = None
        try:
            load_application_config(path)
        except ConfigFileError as exc:
            error = exc
        assert error is None or error.file == str(path)


@pytest.mark.skipif(not SEEDS, reason="no seed configs found")
@FUZZ
@given(st.data())
def test_text_mutations_of_valid_configs_only_raise_config_file_error(data: st.DataObject) -> None:
    """Valid configs with characters inserted, deleted or lines shuffled fail cleanly."""
    name, text = data.draw(st.sampled_from(SEEDS))
    lines = text.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["insert", "delete", "dup", "swap", "indent"]))
        if not lines:
            break
        index = data.draw(st.integers(0, len(lines) - 1))
        if action == "insert":
            line = lines[index]
            at = data.draw(st.integers(0, len(line)))
            piece = data.draw(
                st.sampled_from([":", "- ", "&a ", "*a", "<<: ", "{", "[", '"', "\t"])
            )
            lines[index] = line[:at] + piece + line[at:]
        elif action == "delete":
            del lines[index]
        elif action == "dup":
            lines.insert(index, lines[index])
        elif action == "swap":
            other = data.draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        else:
            lines[index] = "  " + lines[index]
    _load("".join(lines), name)


@pytest.mark.skipif(not SEEDS, reason="no seed configs found")
@FUZZ
@given(st.data())
def test_value_mutations_of_valid_configs_only_raise_config_file_error(data: st.DataObject) -> None:
    """Valid configs with any value replaced by any YAML value fail cleanly, at a real line."""
    index = data.draw(st.integers(0, len(SEEDS) - 1))
    document = copy.deepcopy(SEED_DATA[index])
    paths = list(_paths(document))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        document = _set(document, path, data.draw(values))
        paths = list(_paths(document))
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    _load(text, SEEDS[index][0])


def test_alias_bomb_is_refused() -> None:
    """A 'billion laughs' document is refused quickly instead of expanded."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for level in range(1, 12):
        bomb += (
            f"{chr(97 + level)}: &{chr(97 + level)} "
            + "["
            + ", ".join([f"*{chr(96 + level)}"] * 9)
            + "]\n"
        )
    with pytest.raises(ConfigFileError, match="once aliases expand"):
        load_any(Path("bomb.yaml"), bomb)


def test_deep_nesting_is_refused() -> None:
    """Thousands of nested brackets are a ConfigFileError, not a crash."""
    with pytest.raises(ConfigFileError, match="nested"):
        load_any(Path("deep.yaml"), "a: " + "[" * 5000 + "]" * 5000)


def test_recursive_alias_is_refused() -> None:
    """An alias inside the value it names is a ConfigFileError."""
    with pytest.raises(ConfigFileError, match="contains it"):
        load_any(Path("loop.yaml"), "spec: &a\n  x: *a\n")
