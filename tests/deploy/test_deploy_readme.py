"""deploy/README.md stays true: its `slipway` commands parse, and it covers every service."""

from __future__ import annotations

import re
import shlex

from slipway_cli import build_parser
from tests.support.deploy import ROOT, service_names

README = ROOT / "deploy" / "README.md"


def _code_lines() -> list[str]:
    """The lines inside the README's fenced code blocks."""
    lines, inside = [], False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line.split("#", 1)[0].strip())
    return lines


def test_slipway_commands_in_the_readme_parse() -> None:
    """Every `slipway …` the README tells people to run is accepted by the real CLI."""
    parser = build_parser()
    commands = []
    for line in _code_lines():
        words = shlex.split(line.replace("<", "'<").replace(">", ">'"))
        # `slipway …`, `docker compose exec api slipway …`, `kubectl … exec deploy/api -- slipway …`
        starts = [
            i
            for i, word in enumerate(words)
            if word == "slipway" and (i == 0 or words[i - 1] in ("api", "--"))
        ]
        if starts:
            commands.append(words[starts[0] + 1 :])
    assert len(commands) >= 3
    for command in commands:
        parser.parse_args(command)


def test_scaling_table_covers_every_service() -> None:
    """The scaling table has a row for every services/*/__main__.py."""
    text = README.read_text()
    table = text[text.index("## Scaling") :]
    rows = set(re.findall(r"^\| `([a-z]+)` \|", table, flags=re.MULTILINE))
    assert set(service_names()) <= rows
