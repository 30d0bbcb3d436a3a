"""pipectl's flag values and answer shapes, translated (slipway_cli.pipectl_wire)."""

from __future__ import annotations

import tomllib

import pytest

from shared.errors import ConfigError
from slipway_cli import pipectl
from slipway_cli.pipectl_wire import (
    PIPECD_STATUSES,
    add_labels,
    application_json,
    base_url,
    go_duration,
    list_labels,
    readable_result,
    readable_text,
    slipway_statuses,
)
from tests.support.paths import REPO_ROOT


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("5m", 300.0), ("1h30m", 5400.0), ("300ms", 0.3), ("1.5s", 1.5), ("0", 0.0)],
)
def test_go_durations_parse_as_go_parses_them(text: str, seconds: float) -> None:
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "15", "s", "5 m", "1d", "m5"])
def test_a_duration_go_refuses_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        go_duration(text)


def test_statuses_are_pipecds_names_only() -> None:
    assert "DEPLOYMENT_SUCCESS" in PIPECD_STATUSES and len(PIPECD_STATUSES) == 7
    assert slipway_statuses(["DEPLOYMENT_SUCCESS", "DEPLOYMENT_FAILURE"]) == ("SUCCESS", "FAILURE")
    for wrong in ("SUCCESS", "deployment_success"):
        with pytest.raises(ValueError, match=f"invalid status {wrong}"):
            slipway_statuses([wrong])


def test_labels_parse_as_pipectl_parses_them() -> None:
    # add: parts without exactly one `=` are dropped, as pipectl's strings.Split check does
    assert add_labels("env=dev,team=a,broken,a=b=c") == {"env": "dev", "team": "a"}
    assert add_labels("") == {}
    # list: KEY:VALUE, comma-separated or repeated
    assert list_labels(["env:dev,team:a", "tier:web", "nocolon"]) == {
        "env": "dev",
        "team": "a",
        "tier": "web",
    }


def test_address_is_https_unless_insecure() -> None:
    assert base_url("api.example:443", insecure=False) == "https://api.example:443"
    assert base_url("127.0.0.1:8080", insecure=True) == "http://127.0.0.1:8080"
    assert base_url("http://h:1", insecure=False) == "http://h:1"
    with pytest.raises(ConfigError, match="host:port"):
        base_url("h:1/path", insecure=True)


_APP = {
    "application_id": "01J",
    "name": "account-dev",
    "repository_id": "config",
    "path": "account/dev",
    "config_filename": ".pipe.yaml",
    "platform_provider": "",
    "labels": {"env": "dev"},
    "disabled": False,
    "registered_at": "2026-01-01T00:00:00+00:00",
    "updated_at": "2026-01-01T00:00:10+00:00",
    "sync_state": "SYNCED",
    "sync": {
        "state": "SYNCED",
        "reason": "",
        "since": "2026-01-01T00:01:00+00:00",
        "last_deployment": {
            "deployment_id": "d1",
            "status": "SUCCESS",
            "at": "2026-01-01T00:01:00+00:00",
            "commit_hash": "c",
        },
    },
}


def test_an_application_prints_as_gos_encoding_json_of_pipecds_struct() -> None:
    shaped = application_json(_APP)
    assert shaped == {
        "id": "01J",
        "name": "account-dev",
        "git_path": {
            "repo": {"id": "config"},
            "path": "account/dev",
            "config_filename": ".pipe.yaml",
        },
        "labels": {"env": "dev"},
        "most_recently_successful_deployment": {"deployment_id": "d1", "completed_at": 1767225660},
        "most_recently_triggered_deployment": {"deployment_id": "d1", "started_at": 1767225660},
        "sync_state": {"status": 1, "head_deployment_id": "d1", "timestamp": 1767225660},
        "created_at": 1767225600,
        "updated_at": 1767225610,
    }
    # empty fields are left out (omitempty): no platform provider, not disabled, kind 0
    described = application_json({**_APP, "description": "The accounts service."})
    assert described["description"] == "The accounts service."  # pipectl shows it (field 9)


_PREVIEW = {
    "base": {"branch": "main", "commit": "a"},
    "head": {"ref": "b", "commit": "b"},
    "results": [
        {
            "application": name,
            "config_path": f"{name}/.pipe.yaml",
            "labels": {"env": env},
            "strategy": "pipeline",
            "summary": "sync with pipeline",
            "details": "+ image: v2\n",
        }
        for name, env in (("b-app", "dev"), ("a-app", "prd"))
    ],
    "failures": [
        {"application": "c", "config_path": "c/app.pipecd.yaml", "labels": {}, "error": "bad"}
    ],
}


def test_a_preview_prints_in_pipectls_layout_sorted_by_label_keys() -> None:
    by_env = readable_result(_PREVIEW, ["env"])
    assert [a["ApplicationName"] for a in by_env["Applications"]] == ["b-app", "a-app"]
    by_name = readable_result(_PREVIEW)
    assert [a["ApplicationName"] for a in by_name["Applications"]] == ["a-app", "b-app"]
    text = readable_text(by_name)
    assert text.startswith("\nHere are plan-preview for 2 applications:\n\n1. app: a-app, env: prd")
    assert "  sync strategy: PIPELINE\n  summary: sync with pipeline\n" in text
    assert "  ---DETAILS_BEGIN---\n+ image: v2\n\n  ---DETAILS_END---\n" in text
    assert (
        "\nNOTE: An error occurred while building plan-preview for the following application:\n"
        "\n1. app: c, kind: KUBERNETES\n  reason: bad\n"
    ) in text
    empty = readable_result({**_PREVIEW, "results": [], "failures": []})
    assert readable_text(empty).startswith("\nThere are no updated applications.")


def test_the_opt_in_console_script_names_pipectls_main() -> None:
    declared = tomllib.loads((REPO_ROOT / "tools/pipectl/pyproject.toml").read_text())
    assert declared["project"]["scripts"] == {"pipectl": "slipway_cli.pipectl:main"}
    main_project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "pipectl" not in main_project["project"]["scripts"]  # opt-in: never shadows PipeCD's
    assert pipectl.main(["application", "sync"]) == 1  # cobra's usage error code, not 2
