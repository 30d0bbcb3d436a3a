"""Which applications a commit affects: directories, onCommit paths and ignores, PipeCD patterns."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import load_application_config
from shared.triggers import PathPattern, TriggerConfig, affected, normalize_dir

NONE = TriggerConfig()


@pytest.mark.parametrize(
    ("app_dir", "trigger", "changed", "expected"),
    [
        # the application's own directory
        ("account/dev", NONE, ["account/dev/deployment.yaml"], True),
        ("account/dev/", NONE, ["account/dev/deep/x.yaml"], True),
        ("./account/dev", NONE, ["account/dev/.pipe.yaml"], True),
        ("account/dev", NONE, ["account/prd/deployment.yaml"], False),
        ("account/dev", NONE, ["account/development/x.yaml"], False),
        ("account/dev", NONE, ["account/dev"], False),
        ("", NONE, ["anything/at/all"], True),
        (".", NONE, ["README.md"], True),
        ("account/dev", NONE, [], False),
        # onCommit.paths, relative to the repository root
        ("svc", TriggerConfig(paths=("shared/*.yaml",)), ["shared/base.yaml"], True),
        ("svc", TriggerConfig(paths=("shared/*.yaml",)), ["shared/deep/base.yaml"], False),
        ("svc", TriggerConfig(paths=("shared/**/*.yaml",)), ["shared/a/b/base.yaml"], True),
        ("svc", TriggerConfig(paths=("shared/**/*.yaml",)), ["shared/base.yaml"], True),
        ("svc", TriggerConfig(paths=("**/values.yaml",)), ["x/y/values.yaml"], True),
        ("svc", TriggerConfig(paths=("**/values.yaml",)), ["values.yaml"], True),
        ("svc", TriggerConfig(paths=("charts/**",)), ["charts/a/b/c.tpl"], True),
        ("svc", TriggerConfig(paths=("charts",)), ["charts/a/templates/d.yaml"], True),
        ("svc", TriggerConfig(paths=("charts/*",)), ["charts/a/templates/d.yaml"], True),
        ("svc", TriggerConfig(paths=("char?s/x",)), ["charts/x"], True),
        ("svc", TriggerConfig(paths=("v[0-9].yaml",)), ["v1.yaml"], True),
        ("svc", TriggerConfig(paths=("v[0-9].yaml",)), ["vx.yaml"], False),
        ("svc", TriggerConfig(paths=("a.yaml",)), ["aXyaml"], False),
        ("svc", TriggerConfig(paths=("/shared/x",)), ["shared/x"], True),
        ("svc", TriggerConfig(paths=("!shared/x",)), ["shared/x"], False),
        ("svc", TriggerConfig(paths=("a+b(c)",)), ["a+b(c)"], True),
        # onCommit.ignores: ignored paths are not counted, others still are
        ("svc", TriggerConfig(ignores=("svc/README.md",)), ["svc/README.md"], False),
        (
            "svc",
            TriggerConfig(ignores=("svc/README.md",)),
            ["svc/README.md", "svc/deploy.yaml"],
            True,
        ),
        ("svc", TriggerConfig(ignores=("**/*.md",)), ["svc/docs/a.md", "svc/b.md"], False),
        (
            "svc",
            TriggerConfig(paths=("shared/**",), ignores=("shared/docs",)),
            ["shared/docs/x.yaml"],
            False,
        ),
        # onCommit.disabled: never, whatever changed
        ("svc", TriggerConfig(on_commit_disabled=True), ["svc/deploy.yaml"], False),
        (
            "svc",
            TriggerConfig(on_commit_disabled=True, paths=("shared/**",)),
            ["shared/x.yaml"],
            False,
        ),
    ],
)
def test_affected(app_dir: str, trigger: TriggerConfig, changed: list[str], expected: bool) -> None:
    """An app is touched by its directory or onCommit.paths, minus ignores, unless disabled."""
    assert affected(app_dir, trigger, changed) is expected


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("svc", "svc/a/b.yaml", True),  # a directory matches everything below it
        ("svc", "svcx/a.yaml", False),
        ("*.yaml", "a.yaml", True),
        ("*.yaml", "a/b.yaml", False),  # `*` stays within one segment
        ("a/*/c", "a/b/c", True),
        ("a/*/c", "a/b/x/c", False),
        ("v?.yaml", "v1.yaml", True),
        ("v?.yaml", "v12.yaml", False),
        ("a?b", "a/b", False),  # `?` never matches a `/`
        ("**", "any/depth/at/all", True),
        ("a/**/z", "a/z", True),  # `**/` may span no segment
        ("a/**/z", "a/b/c/z", True),
        ("a/**", "b/a/x", False),
        ("v[12].yaml", "v2.yaml", True),
        ("v[12].yaml", "v3.yaml", False),
        ("v[^12].yaml", "v3.yaml", True),
        ("v[a-c].yaml", "vb.yaml", True),
        ("v[.yaml", "v[.yaml", True),  # an unclosed class is a literal `[`
        (r"a\*b", "a*b", True),
        (r"a\*b", "axb", False),
    ],
)
def test_path_pattern(pattern: str, path: str, expected: bool) -> None:
    """PipeCD's (Docker's) file patterns: `*`, `?`, `**`, `[...]`, escapes, directories."""
    assert PathPattern.parse(pattern).matches(path) is expected


def test_pattern_regex_is_anchored_and_segment_bound() -> None:
    """`*` never crosses a `/`, and a pattern must match the whole path (or a parent dir)."""
    pattern = PathPattern.parse("a/*")
    assert pattern.matches("a/b")
    assert pattern.matches("a/b/c")  # "a/b" is a directory the pattern matches
    assert not pattern.matches("xa/b")
    assert not PathPattern.parse("").matches("a")
    assert not PathPattern.parse("a").matches("a\n")


@pytest.mark.parametrize(
    ("given", "expected"),
    [("", ""), (".", ""), ("/", ""), ("./a/b/", "a/b"), ("a//b", "a/b"), (" a ", "a")],
)
def test_normalize_dir(given: str, expected: str) -> None:
    """Application directories are cleaned relative to the root; the root itself is ""."""
    assert normalize_dir(given) == expected


def test_trigger_config_from_a_loaded_application_config() -> None:
    """`spec.trigger.onCommit` of a loaded config becomes the TriggerConfig `affected` takes."""
    config = load_application_config(
        Path("svc/app.pipecd.yaml"),
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  trigger:\n"
        "    onCommit:\n      disabled: true\n      paths: [shared/**]\n"
        "      ignores: ['**/*.md']\n",
    )
    assert TriggerConfig.from_on_commit(config.spec.trigger.on_commit) == TriggerConfig(
        on_commit_disabled=True, paths=("shared/**",), ignores=("**/*.md",)
    )
    default = load_application_config(
        Path("svc/app.pipecd.yaml"), "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\n"
    )
    assert TriggerConfig.from_on_commit(default.spec.trigger.on_commit) == NONE
