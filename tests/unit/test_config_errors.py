"""A table of wrong application configs, each with the exact error it must produce."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigFileError, load_any, load_application_config
from shared.errors import ConfigError

FILE = "kubernetes/canary/app.pipecd.yaml"
BASE = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: canary
  labels:
    env: prd
  pipeline:
    stages:
      - name: K8S_CANARY_ROLLOUT
        with:
          replicas: 10%
      - name: WAIT
        with:
          duration: 10s
      - name: K8S_PRIMARY_ROLLOUT
"""
WAIT = "- name: WAIT\n        with:\n          duration: 10s"
STAGE_NAMES = (
    "K8S_SYNC, K8S_PRIMARY_ROLLOUT, K8S_CANARY_ROLLOUT, K8S_CANARY_CLEAN, K8S_BASELINE_ROLLOUT, "
    "K8S_BASELINE_CLEAN, K8S_TRAFFIC_ROUTING, WAIT, WAIT_APPROVAL, ANALYSIS, SCRIPT_RUN, ROLLBACK, "
    "CUSTOM_SYNC"
)

# (id, config text, line, column, field path, problem)
CASES = [
    (
        "unknown field",
        BASE + "  autoRollback: true\n",
        16,
        3,
        "spec.autoRollback",
        'unknown field "autoRollback"; known fields: name, labels, description, planner, '
        "commitMatcher, pipeline, trigger, postSync, timeout, encryption, attachment, "
        "notification, eventWatcher, driftDetection, input, quickSync, service, workloads, "
        "trafficRouting, variantLabel, resourceRoutes",
    ),
    (
        "unknown nested field, with a suggestion",
        BASE + "  trigger:\n    onCommit:\n      path: [a]\n",
        18,
        7,
        "spec.trigger.onCommit.path",
        'unknown field "path"; did you mean "paths"?',
    ),
    (
        "unknown top-level field",
        BASE + "metadata: {}\n",
        16,
        1,
        "metadata",
        'unknown field "metadata"; known fields: apiVersion, kind, spec',
    ),
    (
        "number where a string is expected",
        BASE.replace("env: prd", "env: 1"),
        6,
        5,
        "spec.labels.env",
        'expected a string, got 1 (quote it: "1")',
    ),
    (
        "unquoted version number",
        BASE + "  input:\n    helmVersion: 3.8\n",
        17,
        5,
        "spec.input.helmVersion",
        'expected a string, got 3.8 (quote it: "3.8")',
    ),
    (
        "string where a list is expected",
        BASE + "  workloads: Deployment\n",
        16,
        3,
        "spec.workloads",
        'expected a list, got "Deployment"',
    ),
    (
        "string where a boolean is expected",
        BASE + "  planner:\n    alwaysUsePipeline: sometimes\n",
        17,
        5,
        "spec.planner.alwaysUsePipeline",
        'expected true or false, got "sometimes"',
    ),
    (
        "wrong type in one value of a map",
        BASE
        + "  input:\n    kustomizeOptions:\n      load-restrictor: none\n      enable-helm: true\n",
        19,
        7,
        "spec.input.kustomizeOptions.enable-helm",
        "expected a string, got true",
    ),
    (
        "kustomize option that would run programs",
        BASE + "  input:\n    kustomizeOptions:\n      enable-exec: ''\n",
        18,
        7,
        "spec.input.kustomizeOptions.enable-exec",
        'kustomize option "enable-exec" is not allowed (it could run programs from the '
        "repository); allowed: enable-helm, enable-managedby-label, load-restrictor, reorder, "
        "stack-trace",
    ),
    (
        "bad duration",
        BASE.replace("duration: 10s", "duration: 10 seconds"),
        14,
        11,
        "spec.pipeline.stages[1].with.duration",
        'expected a duration like "10s", "5m" or "1h30m", got "10 seconds"',
    ),
    (
        "duration without a unit",
        BASE.replace("duration: 10s", "duration: 10"),
        14,
        11,
        "spec.pipeline.stages[1].with.duration",
        'expected a duration like "10s", "5m" or "1h30m", got 10 (a number needs a unit: "10s")',
    ),
    (
        "negative duration",
        BASE + "  timeout: -1h\n",
        16,
        3,
        "spec.timeout",
        'expected a non-negative duration, got "-1h"',
    ),
    (
        "bad replicas",
        BASE.replace("replicas: 10%", "replicas: ten"),
        11,
        11,
        "spec.pipeline.stages[0].with.replicas",
        'expected an integer or a percentage like "10%", got "ten"',
    ),
    (
        "fractional replicas",
        BASE.replace("replicas: 10%", "replicas: 1.5"),
        11,
        11,
        "spec.pipeline.stages[0].with.replicas",
        'expected an integer or a percentage like "10%", got 1.5',
    ),
    (
        "bad regex in commitMatcher",
        BASE + "  commitMatcher:\n    pipeline: '(?<'\n",
        17,
        5,
        "spec.commitMatcher.pipeline",
        'expected a valid regular expression, got "(?<" (unexpected end of pattern at position 3)',
    ),
    (
        "unknown stage name",
        BASE.replace("- name: WAIT\n", "- name: WAIT_FOR_IT\n"),
        12,
        9,
        "spec.pipeline.stages[1].name",
        f'expected a stage name, one of {STAGE_NAMES}; got "WAIT_FOR_IT"',
    ),
    (
        "a stage of another platform",
        BASE.replace("- name: WAIT\n", "- name: ECS_SYNC\n"),
        12,
        9,
        "spec.pipeline.stages[1].name",
        "stage ECS_SYNC is not a Kubernetes stage; Slipway deploys KubernetesApp",
    ),
    (
        "stage without a name",
        BASE + "      - with: {duration: 1m}\n",
        16,
        9,
        "spec.pipeline.stages[3]",
        'missing required field "name" (the stage kind, like WAIT)',
    ),
    (
        "value outside an enumeration",
        BASE.replace(WAIT, "- name: K8S_TRAFFIC_ROUTING\n        with:\n          all: everyone"),
        14,
        11,
        "spec.pipeline.stages[1].with.all",
        'expected one of "primary", "canary", "baseline", got "everyone"',
    ),
    (
        "bad traffic percentage",
        BASE.replace(WAIT, "- name: K8S_TRAFFIC_ROUTING\n        with:\n          canary: 110%"),
        14,
        11,
        "spec.pipeline.stages[1].with.canary",
        'expected a percentage from 0 to 100 like 10 or "10%", got "110%"',
    ),
    (
        "analysis without duration",
        BASE.replace(WAIT, "- name: ANALYSIS\n        with:\n          metrics: []"),
        14,
        11,
        "spec.pipeline.stages[1].with.duration",
        'the ANALYSIS stage needs a duration, like "10m"',
    ),
    (
        "analysis metric without provider",
        BASE.replace(
            WAIT,
            "- name: ANALYSIS\n        with:\n          duration: 10m\n          metrics:\n"
            "            - query: up\n              interval: 1m",
        ),
        16,
        15,
        "spec.pipeline.stages[1].with.metrics[0].provider",
        "required: the name of an analysis provider",
    ),
    (
        "no approver needed",
        BASE.replace(WAIT, "- name: WAIT_APPROVAL\n        with:\n          minApproverNum: 0"),
        14,
        11,
        "spec.pipeline.stages[1].with.minApproverNum",
        "expected at least 1, got 0",
    ),
    (
        "unknown notification event",
        BASE + "  notification:\n    mentions:\n      - event: DEPLOYMENT_FAIL\n",
        18,
        9,
        "spec.notification.mentions[0].event",
        'expected "*" or one of DEPLOYMENT_TRIGGERED, DEPLOYMENT_PLANNED, DEPLOYMENT_APPROVED, '
        "DEPLOYMENT_ROLLING_BACK, DEPLOYMENT_SUCCEEDED, DEPLOYMENT_FAILED, DEPLOYMENT_CANCELLED, "
        "DEPLOYMENT_WAIT_APPROVAL, DEPLOYMENT_TRIGGER_FAILED, DEPLOYMENT_STARTED, "
        "DEPLOYMENT_CHAIN_SUCCEEDED, DEPLOYMENT_CHAIN_FAILED, DEPLOYMENT_CHAIN_CANCELLED, "
        "APPLICATION_SYNCED, APPLICATION_OUT_OF_SYNC, APPLICATION_HEALTHY, PIPED_STARTED, "
        "PIPED_STOPPED, STAGE_STARTED, STAGE_SKIPPED, STAGE_SUCCEEDED, STAGE_FAILED, "
        "STAGE_CANCELLED; "
        'got "DEPLOYMENT_FAIL"',
    ),
    (
        "drift ignore field without #",
        BASE + "  driftDetection:\n    ignoreFields: [apps/v1:Deployment:default:web]\n",
        17,
        20,
        "spec.driftDetection.ignoreFields[0]",
        "expected 'apiVersion:kind:namespace:name#fieldPath', "
        'got "apps/v1:Deployment:default:web"',
    ),
    (
        "wrong apiVersion",
        BASE.replace("pipecd.dev/v1beta1", "pipecd.dev/v1"),
        1,
        1,
        "apiVersion",
        'expected "pipecd.dev/v1beta1", got "pipecd.dev/v1"',
    ),
    (
        "unsupported PipeCD kind",
        BASE.replace("KubernetesApp", "TerraformApp"),
        2,
        1,
        "kind",
        "TerraformApp is not supported by Slipway (it deploys KubernetesApp)",
    ),
    (
        "YAML syntax error",
        BASE.replace("env: prd", "env: [prd"),
        7,
        11,
        "",
        "invalid YAML: while parsing a flow sequence expected ',' or ']', but got ':'",
    ),
    (
        "duplicate key",
        BASE.replace("  name: canary\n", "  name: canary\n  name: canary2\n"),
        5,
        3,
        "",
        'invalid YAML: duplicate key "name" (first at line 4)',
    ),
    (
        "not a mapping",
        "- apiVersion: pipecd.dev/v1beta1\n",
        1,
        1,
        "",
        "expected a mapping with apiVersion, kind and spec, got a list",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "field_path", "problem"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_config_error_names_file_line_column_field_and_expectation(
    text: str, line: int, column: int, field_path: str, problem: str
) -> None:
    """Each wrong config fails with exactly this located, explained error."""
    with pytest.raises(ConfigFileError) as caught:
        load_application_config(Path(FILE), text)
    error = caught.value
    assert (error.file, error.line, error.column) == (FILE, line, column)
    assert error.field_path == field_path
    assert error.problem == problem
    where = f"{FILE}:{line}:{column}: " + (f"{field_path}: " if field_path else "")
    assert str(error) == where + problem


def test_config_file_error_is_a_config_error() -> None:
    """ConfigFileError sits under ConfigError, so the CLI's handler reports it."""
    with pytest.raises(ConfigError):
        load_application_config(Path(FILE), "kind: KubernetesApp\n")


def test_missing_file_is_a_config_file_error(tmp_path: Path) -> None:
    """A file that cannot be read is a ConfigFileError naming it, without a position."""
    missing = tmp_path / "app.pipecd.yaml"
    with pytest.raises(ConfigFileError) as caught:
        load_application_config(missing)
    assert caught.value.line == 0
    assert str(caught.value) == f"{missing}: cannot read: No such file or directory"


def test_non_utf8_file_is_located(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported at their line and column."""
    path = tmp_path / "app.pipecd.yaml"
    path.write_bytes(b"apiVersion: pipecd.dev/v1beta1\nkind: \xff\n")
    with pytest.raises(ConfigFileError) as caught:
        load_application_config(path)
    assert (caught.value.line, caught.value.column) == (2, 7)
    assert caught.value.problem == "not UTF-8 text"


def test_unknown_kind_lists_the_kinds_we_load() -> None:
    """load_any names the kinds it understands when the kind is unknown."""
    with pytest.raises(ConfigFileError) as caught:
        load_any(Path(FILE), BASE.replace("KubernetesApp", "Deployment"))
    assert caught.value.field_path == "kind"
    assert caught.value.problem.startswith('unknown kind "Deployment"; expected KubernetesApp')


def test_errors_point_into_merged_mappings() -> None:
    """A value brought in by a YAML merge key (<<) is located where it was written."""
    text = BASE + "  trigger:\n    onCommit: &commit\n      disabled: maybe\n"
    text += "    onCommand:\n      <<: *commit\n"
    with pytest.raises(ConfigFileError) as caught:
        load_application_config(Path(FILE), text)
    assert (caught.value.line, caught.value.column) == (18, 7)
    assert caught.value.field_path == "spec.trigger.onCommit.disabled"


def test_unknown_stage_option_is_a_located_warning_not_an_error() -> None:
    """An unknown `with:` option is ignored like PipeCD does, with a warning naming it."""
    text = BASE.replace("duration: 10s", "duration: 10s\n          durations: 20s")
    app = load_application_config(Path(FILE), text)
    (warning,) = app.warnings
    assert str(warning) == (
        f"{FILE}:15:11: spec.pipeline.stages[1].with.durations: "
        'unknown option "durations" of the WAIT stage ignored, as PipeCD does; '
        'did you mean "duration"?'
    )


def test_stage_options_still_check_types() -> None:
    """Leniency inside `with:` is only for unknown keys: a known option's type is still checked."""
    text = BASE.replace("duration: 10s", "duration: 10s\n          extra: 1").replace(
        "replicas: 10%", "replicas: many"
    )
    with pytest.raises(ConfigFileError, match="replicas: expected an integer"):
        load_application_config(Path(FILE), text)


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    """Two bad stage names, or problems in several stages and sections, come in one error
    (one line each, in the file's order), which still has the first one's position."""
    names = BASE.replace("K8S_CANARY_ROLLOUT", "CANARY").replace("K8S_PRIMARY_ROLLOUT", "PRIMARY")
    with pytest.raises(ConfigFileError) as raised:
        load_application_config(Path(FILE), names)
    assert [(e.line, e.field_path) for e in raised.value.errors] == [
        (9, "spec.pipeline.stages[0].name"),
        (15, "spec.pipeline.stages[2].name"),
    ]
    several = BASE.replace(WAIT, "- name: WAIT_APPROVAL\n        with: {minApproverNum: 0}") + (
        "      - name: SCRIPT_RUN\n  driftDetection:\n    ignoreFields: [nohash]\n"
    )
    with pytest.raises(ConfigFileError) as raised:
        load_application_config(Path(FILE), several)
    error = raised.value
    assert [e.field_path for e in error.errors] == [
        "spec.pipeline.stages[1].with.minApproverNum",
        "spec.pipeline.stages[3].with.run",
        "spec.driftDetection.ignoreFields[0]",
    ]
    assert (error.file, error.line, error.field_path) == (FILE, 13, error.errors[0].field_path)
    assert str(error).splitlines() == [str(e) for e in error.errors]
