"""The event watcher's file edits (pure): YAML/JSON fields, regexes, paths, commit messages."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from services.gitwatcher.eventplan import MAX_FILE_BYTES, Replacement, Watcher, plan_commits
from services.gitwatcher.replacements import (
    ReplacementError,
    commit_message,
    parse_field_path,
    replace_json_field,
    replace_regex,
    replace_yaml_field,
    repository_path,
)
from shared.gitevents import InvalidEvent, check_event

DEPLOYMENT = """\
# The web deployment: the image is written by the event watcher.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # keep this name
spec:
  template:
    spec:
      containers:
        - name: web
          image: registry/app:v1.0.0  # bumped by CI
          args: ["--port", '8080']
"""


def test_yaml_field_changes_only_the_scalar_keeping_comments_and_layout() -> None:
    new = replace_yaml_field(
        DEPLOYMENT, "$.spec.template.spec.containers[0].image", "registry/app:v1.2.3"
    )
    assert new == DEPLOYMENT.replace("registry/app:v1.0.0", "registry/app:v1.2.3")


def test_yaml_field_already_holding_the_value_is_no_change() -> None:
    path = "$.spec.template.spec.containers[0].image"
    assert replace_yaml_field(DEPLOYMENT, path, "registry/app:v1.0.0") is None


@pytest.mark.parametrize(
    "value",
    [
        "v2 # not a comment",
        "{injected: true}",
        'x", "evil": "y',
        "yes",
        "1.5",
        "a: b",
        "- item",
        "&anchor v",
        "*alias",
        "'quoted'",
        "",
    ],
)
def test_yaml_field_writes_any_value_as_one_string_scalar(value: str) -> None:
    path = "$.spec.template.spec.containers[0].image"
    new = replace_yaml_field(DEPLOYMENT, path, value)
    assert new is not None
    loaded = yaml.safe_load(new)
    assert loaded["spec"]["template"]["spec"]["containers"][0]["image"] == value
    expected = yaml.safe_load(DEPLOYMENT)
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = value
    assert loaded == expected
    assert "# bumped by CI" in new and "# keep this name" in new


def test_yaml_field_keeps_quoting_style_and_handles_flow_sequences() -> None:
    new = replace_yaml_field(DEPLOYMENT, "$.spec.template.spec.containers[0].args[1]", "9090")
    assert new == DEPLOYMENT.replace("'8080'", "'9090'")
    flow = 'a: {image: "x:v1", other: 1}\n'
    assert (
        replace_yaml_field(flow, "$.a.image", "x:v2, b: c")
        == 'a: {image: "x:v2, b: c", other: 1}\n'
    )


def test_yaml_field_in_the_first_document_that_has_it() -> None:
    text = "kind: Service\nspec: {}\n---\nkind: Deployment\nspec:\n  image: a:v1\n"
    assert replace_yaml_field(text, "$.spec.image", "a:v2") == text.replace("a:v1", "a:v2")


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("$.spec.missing", "no such field"),
        ("$.spec.template", "is a mapping, not a scalar"),
        ("spec.image", "starts with"),
        ("$", "whole document"),
        ("$.a[x]", "cannot read the path"),
    ],
)
def test_yaml_field_errors_name_the_file_and_field(path: str, problem: str) -> None:
    with pytest.raises(ReplacementError, match=problem):
        replace_yaml_field(DEPLOYMENT, path, "v", file="apps/web/deployment.yaml")


def test_field_paths() -> None:
    assert parse_field_path("$.a.b[0]['c.d'][\"e\"]") == ["a", "b", 0, "c.d", "e"]


def test_json_field_writes_a_json_string() -> None:
    text = '{\n  "image": "a:v1",\n  "n": 1e3\n}\n'
    assert (
        replace_json_field(text, "$.image", 'a:"v2"')
        == '{\n  "image": "a:\\"v2\\"",\n  "n": 1e3\n}\n'
    )


def test_regex_replaces_the_first_group_of_every_match() -> None:
    text = "image: registry/app:v1.0.0\nsidecar: registry/app:v1.0.0\nother: registry/db:v1.0.0\n"
    new = replace_regex(text, r"registry/app:(v[0-9.]+)", "v1.2.3")
    assert new == text.replace("app:v1.0.0", "app:v1.2.3")
    assert replace_regex(new or "", r"registry/app:(v[0-9.]+)", "v1.2.3") is None
    with pytest.raises(ReplacementError, match="matches nothing"):
        replace_regex(text, r"nothing:(v1)", "v2")
    with pytest.raises(ReplacementError, match="capture group"):
        replace_regex(text, r"registry", "v2")


@pytest.mark.parametrize(
    ("base", "file", "expected"),
    [
        ("apps/web", "deployment.yaml", "apps/web/deployment.yaml"),
        ("apps/web", "../shared/images.yaml", "apps/shared/images.yaml"),
        ("", "apps/web/x.yaml", "apps/web/x.yaml"),
    ],
)
def test_repository_paths_inside(base: str, file: str, expected: str) -> None:
    assert repository_path(base, file) == expected


@pytest.mark.parametrize(
    ("base", "file"),
    [
        ("apps/web", "../../../etc/passwd"),
        ("", "../outside.yaml"),
        ("apps", "/etc/passwd"),
        ("", ".git/config"),
        ("apps/web", "../../.git/hooks/pre-commit"),
        ("", "a\nb"),
    ],
)
def test_repository_paths_outside_are_refused(base: str, file: str) -> None:
    with pytest.raises(ReplacementError):
        repository_path(base, file)


def test_commit_messages_follow_pipecd() -> None:
    assert (
        commit_message("", value="registry/app:v1.2.3", event_name="image-update")
        == 'Replace values with "registry/app:v1.2.3" set by Event "image-update"'
    )
    assert (
        commit_message("Bump to {{ .Value }} ({{.EventName}})", value="v2", event_name="e")
        == "Bump to v2 (e)"
    )
    assert commit_message("Keep {{ .Other }}", value="v2", event_name="e") == "Keep {{ .Other }}"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "", "data": "v"}, "name"),
        ({"name": "bad name", "data": "v"}, "name"),
        ({"name": "n", "data": ""}, "data"),
        ({"name": "n", "data": "v1\nkind: Secret"}, "data"),
        ({"name": "n", "data": "v", "labels": {"env": "dev prod"}}, "labels.env"),
        ({"name": "n", "data": "v", "contexts": {"bad key": "x"}}, "contexts.bad key"),
        ({"name": "n", "data": "v", "commit_hash": "HEAD~1"}, "commitHash"),
    ],
)
def test_registrations_breaking_a_rule_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    kwargs.setdefault("labels", {})
    with pytest.raises(InvalidEvent) as caught:
        check_event(**kwargs)
    assert caught.value.field == field


def test_a_regex_on_yaml_may_change_values_but_never_the_structure() -> None:
    text = 'web: {image: "reg/web:v1", port: 80}\n'
    watcher = Watcher(
        origin="app:web",
        name="image-update",
        labels=(),
        base_dir="",
        replacements=(Replacement("values.yaml", "regex", r'image: "reg/web:([^"]*)"'),),
    )
    planned = plan_commits(
        [watcher], {"values.yaml": text.encode()}, event_id="e1", event_name="n", value="v2"
    )
    assert planned[0].changes["values.yaml"] == text.replace("v1", "v2").encode()
    with pytest.raises(ReplacementError, match="structure"):
        plan_commits(
            [watcher],
            {"values.yaml": text.encode()},
            event_id="e2",
            event_name="n",
            value='v2", evil: "x',
        )


CATASTROPHIC = r"(a|aa)+$"
"""Backtracks exponentially on a run of `a`s that ends otherwise: unbounded, the test's line
of 33 costs `regex` about 5 s of CPU here, and each more `a` multiplies that by 1.6."""


def _regex_watcher(pattern: str) -> Watcher:
    return Watcher(
        origin=".pipe/versions.yaml",
        name="chart",
        labels=(),
        base_dir="",
        replacements=(Replacement("versions.txt", "regex", pattern),),
    )


def test_a_regex_that_backtracks_without_end_is_stopped_at_its_time_limit() -> None:
    text = "chart: v1\n" + "a" * 33 + "!\n"
    started = time.process_time()
    with pytest.raises(ReplacementError) as caught:
        plan_commits(
            [_regex_watcher(CATASTROPHIC)],
            {"versions.txt": text.encode()},
            event_id="e1",
            event_name="chart",
            value="v2",
            regex_time_limit_s=0.2,
        )
    assert time.process_time() - started < 1.0
    message = str(caught.value)
    for named in (".pipe/versions.yaml", "versions.txt", repr(CATASTROPHIC), "0.2 s"):
        assert named in message
    # A sound pattern on the same file is unaffected by the limit.
    [planned] = plan_commits(
        [_regex_watcher(r"chart: (v[0-9]+)")],
        {"versions.txt": text.encode()},
        event_id="e2",
        event_name="chart",
        value="v2",
        regex_time_limit_s=0.2,
    )
    assert planned.changes["versions.txt"] == text.replace("v1", "v2").encode()


def test_a_file_over_the_size_limit_is_not_edited() -> None:
    text = "chart: v1\n" + "#" * MAX_FILE_BYTES
    with pytest.raises(ReplacementError, match=r"versions\.txt: over .* too large"):
        plan_commits(
            [_regex_watcher(r"chart: (v[0-9]+)")],
            {"versions.txt": text.encode()},
            event_id="e1",
            event_name="chart",
            value="v2",
        )
