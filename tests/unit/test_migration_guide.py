"""docs/migrating-from-pipecd.md stays true: its Piped config loads as written (warnings
named, the Slack Web API receiver kept) and its pipectl commands parse as Slipway's takes
them. The steps it describes are done by the tests it cites."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from shared.config import load_application_config
from shared.config.control_loader import load_control_config
from slipway_cli.pipectl import build_parser
from tests.support.paths import REPO_ROOT

GUIDE = (REPO_ROOT / "docs" / "migrating-from-pipecd.md").read_text()
_BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(GUIDE) if lang == language]


def _pipectl_commands() -> list[list[str]]:
    joined = "\n".join(_blocks("sh")).replace("\\\n", " ")
    return [shlex.split(line)[1:] for line in joined.splitlines() if line.startswith("pipectl ")]


def test_the_guides_piped_config_loads_with_its_piped_only_settings_named(
    tmp_path: Path,
) -> None:
    [piped] = [b for b in _blocks("yaml") if "kind: Piped" in b]
    (tmp_path / "piped.yaml").write_text(piped)
    config = load_control_config(tmp_path / "piped.yaml")
    assert config.source_kind == "Piped"
    warned = {w.field_path for w in config.warnings}
    assert {"spec.pipedKeyFile", "spec.apiAddress"} <= warned
    assert "spec.pipedID" not in warned  # kept: written as `pipecd.dev/piped`
    assert {p.config.piped_id for p in config.spec.platform_providers} == {"4c3b1a2e-piped"}
    [receiver] = config.spec.notifications.receivers
    assert receiver.slack is not None and receiver.slack.uses_api
    assert [r.name for r in config.spec.notifications.routes] == ["prd-failures"]


def test_the_guides_cited_tests_exist() -> None:
    for cited in set(re.findall(r"`(tests/[\w/.-]+\.(?:py|sh))`", GUIDE)):
        assert (REPO_ROOT / cited).exists(), cited


@pytest.mark.parametrize("argv", _pipectl_commands(), ids=lambda argv: " ".join(argv[:2]))
def test_the_guides_pipectl_commands_parse(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.address == "slipway-api.example:443"


def test_the_guide_shows_the_seeds_ci_steps() -> None:
    commands = {" ".join(argv[:2]) for argv in _pipectl_commands()}
    assert {
        "application add",
        "application sync",
        "deployment wait-status",
        "plan-preview --address",
    } <= commands


def test_the_guides_resource_routes_load_as_an_application_config(tmp_path: Path) -> None:
    [routes] = [b for b in _blocks("yaml") if "resourceRoutes" in b]
    (tmp_path / "app.pipecd.yaml").write_text(routes)
    config = load_application_config(tmp_path / "app.pipecd.yaml")
    assert [(r.match and r.match.kind, r.provider.name) for r in config.spec.resource_routes] == [
        ("Service", "edge"),
        ("Deployment", ""),
    ]


def test_the_parity_checklists_cited_tests_and_files_exist() -> None:
    """docs/pipecd-parity.md cites `file::test` (or `::test` after a file in the same
    cell): each test is defined in its file, and each path it names exists."""
    checklist = (REPO_ROOT / "docs" / "pipecd-parity.md").read_text()
    tests: dict[str, list[Path]] = {}
    for found in (REPO_ROOT / "tests").rglob("test_*.py"):
        tests.setdefault(found.name, []).append(found)
    cited = 0
    for row in checklist.splitlines():
        file: Path | None = None
        for name, test in re.findall(r"`((?:tests/[\w/]+/)?test_\w+\.py)?(?:::(test_\w+))?`", row):
            if name and "/" in name:
                file = REPO_ROOT / name
            elif name:
                assert len(tests[name]) == 1, f"{name} is ambiguous: give its folder"
                [file] = tests[name]
            if not test:
                continue
            assert file is not None, f"{test} cited without its file: {row[:80]}"
            defined = re.search(rf"^(?:async )?def {test}\(", file.read_text(), re.MULTILINE)
            assert defined, f"{file.relative_to(REPO_ROOT)}::{test} does not exist"
            cited += 1
    assert cited > 100
    for path in re.findall(
        r"`((?:shared|services|slipway_cli|tools|scripts|kubesim|docs|tests)/[\w/.-]*\w)`",
        checklist,
    ):
        assert (REPO_ROOT / path).exists(), path
