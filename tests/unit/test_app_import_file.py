"""`slipway app import --from-file` reads Slipway's YAML list or what PipeCD's own
`pipectl application list` printed, so the bulk cut-over needs no hand-written file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import ConfigError
from slipway_cli.app_import import read_import_file

# What PipeCD's pipectl prints: Go's encoding/json of ListApplicationsResponse.
PIPECTL_LIST = {
    "applications": [
        {
            "id": "3c6f0b2e-7d1a-4e5b-9c8d-1a2b3c4d5e6f",
            "name": "account-prd",
            "piped_id": "4c3b1a2e-piped",
            "project_id": "bucketeer",
            "git_path": {
                "repo": {"id": "config", "remote": "git@example:config.git", "branch": "main"},
                "path": "account/prd",
                "config_filename": ".pipe.yaml",
                "url": "https://example/config/tree/main/account/prd/.pipe.yaml",
            },
            "labels": {"env": "prd"},
            "sync_state": {"status": 1},
        },
        {
            "id": "9a8b7c6d",
            "name": "web-dev",
            "git_path": {"repo": {"id": "config"}, "path": "web/dev"},
        },
    ],
    "cursor": "next",
}


def test_pipectls_application_list_is_read_as_the_applications_to_import(
    tmp_path: Path,
) -> None:
    listed = tmp_path / "apps.json"
    listed.write_text(json.dumps(PIPECTL_LIST))
    first, second = read_import_file(listed)
    assert (first.name, first.pipecd_app_id, first.repo, first.path, first.config_filename) == (
        "account-prd",
        "3c6f0b2e-7d1a-4e5b-9c8d-1a2b3c4d5e6f",
        "config",
        "account/prd",
        ".pipe.yaml",
    )
    assert (second.name, second.pipecd_app_id, second.config_filename) == (
        "web-dev",
        "9a8b7c6d",
        None,  # PipeCD left it out: the default file name
    )


def test_a_pipecd_entry_without_its_repository_is_an_error_naming_the_field(
    tmp_path: Path,
) -> None:
    broken = json.loads(json.dumps(PIPECTL_LIST))
    del broken["applications"][1]["git_path"]["repo"]["id"]
    listed = tmp_path / "apps.json"
    listed.write_text(json.dumps(broken))
    with pytest.raises(ConfigError, match=r"applications\[1\]\.git_path\.repo\.id: expected"):
        read_import_file(listed)
