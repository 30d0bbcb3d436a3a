"""The watcher parses each application config once per content, at 10,000 applications too."""

from __future__ import annotations

from services.gitwatcher import appconfigs
from services.gitwatcher.decider import AppConfigFacts

APPLICATIONS = 10_000


def test_every_config_of_ten_thousand_applications_is_parsed_once() -> None:
    parsed: list[str] = []

    def read(path: str, content: bytes) -> AppConfigFacts:
        parsed.append(path)
        return AppConfigFacts(name=content.decode())

    configs = [(f"svc{n:05d}/app.pipecd.yaml", f"app-{n}".encode()) for n in range(APPLICATIONS)]
    # Two heads in a row: the watcher reads every registered config at each.
    for _head in range(2):
        for path, content in configs:
            facts = appconfigs._parse_cached(read, path, content)
            assert isinstance(facts, AppConfigFacts)
            assert facts.name == content.decode()
    assert len(parsed) == APPLICATIONS
