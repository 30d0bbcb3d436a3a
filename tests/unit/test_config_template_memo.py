"""`.pipe/` AnalysisTemplates are parsed once per checkout and content, never served stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import discovery, pipe_files
from shared.config.analysis import AnalysisTemplateSpec
from shared.config.repo_files import unchanged_since, unchanging
from shared.errors import ConfigError

TEMPLATE = """\
apiVersion: pipecd.dev/v1beta1
kind: AnalysisTemplate
spec:
  metrics:
    {name}:
      provider: prometheus
      query: up
      interval: 1m
      expected: {{min: 1}}
"""


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The roots whose templates were really parsed, in order."""
    seen: list[Path] = []
    parse = pipe_files._load_analysis_templates

    def counting(repo_root: Path) -> AnalysisTemplateSpec:
        seen.append(repo_root)
        return parse(repo_root)

    monkeypatch.setattr(pipe_files, "_load_analysis_templates", counting)
    return seen


def repository(root: Path, name: str) -> Path:
    (root / ".pipe").mkdir(parents=True)
    (root / ".pipe" / "analysis.yaml").write_text(TEMPLATE.format(name=name))
    return root


def test_the_same_files_are_parsed_once(tmp_path: Path, parses: list[Path]) -> None:
    root = repository(tmp_path / "checkout", "error_rate")
    first = pipe_files.load_analysis_templates(root)
    again = pipe_files.load_analysis_templates(root)
    assert list(again.metrics) == ["error_rate"]
    assert again == first
    assert parses == [root]


def test_changed_content_is_parsed_again(tmp_path: Path, parses: list[Path]) -> None:
    root = repository(tmp_path / "checkout", "error_rate")
    assert list(pipe_files.load_analysis_templates(root).metrics) == ["error_rate"]
    (root / ".pipe" / "analysis.yaml").write_text(TEMPLATE.format(name="latency"))
    assert list(pipe_files.load_analysis_templates(root).metrics) == ["latency"]
    (root / ".pipe" / "more.yaml").write_text(TEMPLATE.format(name="saturation"))
    assert sorted(pipe_files.load_analysis_templates(root).metrics) == ["latency", "saturation"]
    assert len(parses) == 3


def test_another_checkout_is_parsed_for_its_own_paths(tmp_path: Path, parses: list[Path]) -> None:
    # Same bytes, another root: an error must name this checkout's files.
    one = repository(tmp_path / "one", "error_rate")
    two = repository(tmp_path / "two", "error_rate")
    pipe_files.load_analysis_templates(one)
    pipe_files.load_analysis_templates(two)
    assert parses == [one, two]


def test_a_symlink_out_of_the_repository_is_refused_after_a_good_load(tmp_path: Path) -> None:
    root = repository(tmp_path / "checkout", "error_rate")
    pipe_files.load_analysis_templates(root)
    outside = tmp_path / "outside.yaml"
    outside.write_text(TEMPLATE.format(name="stolen"))
    (root / ".pipe" / "evil.yaml").symlink_to(outside)
    with pytest.raises(ConfigError, match=r"evil\.yaml"):
        pipe_files.load_analysis_templates(root)


def test_an_unchanging_checkout_is_read_once_per_stretch(
    tmp_path: Path, parses: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a root is declared unchanging (a commit's checkout the planner holds), its
    templates are listed and read once, not again for every application; a new stretch (a
    new checkout at the same path) and a root not declared are read as they are."""
    root = repository(tmp_path / "checkout", "error_rate")
    listed: list[Path] = []
    shared_files = discovery.shared_files

    def listing(directory: Path) -> list[Path]:
        listed.append(directory)
        return shared_files(directory)

    monkeypatch.setattr(pipe_files, "shared_files", listing)
    with unchanging(root), unchanging(root):  # two readers of one checkout
        for _ in range(3):
            assert list(pipe_files.load_analysis_templates(root).metrics) == ["error_rate"]
    assert len(listed) == 1 and parses == [root]
    (root / ".pipe" / "analysis.yaml").write_text(TEMPLATE.format(name="latency"))
    with unchanging(root):
        assert list(pipe_files.load_analysis_templates(root).metrics) == ["latency"]
    assert list(pipe_files.load_analysis_templates(root).metrics) == ["latency"]
    assert unchanged_since(root) is None
