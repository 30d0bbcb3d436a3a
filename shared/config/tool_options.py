"""What an application config may hand to kustomize and helm: allow-listed (option, value) pairs.

A config repository is untrusted (plan preview renders unmerged branches), so
no value from it may ever become an option of a tool: kustomize's and helm's
own command hooks (`--helm-command`, `--post-renderer`, exec and alpha
plugins, `--mount`, `--output`) would run or write whatever the branch says.
The rules, checked once here and used both when a config is loaded (errors
name the field) and when a command is built (so nothing unchecked runs):

- kustomize options come from `KUSTOMIZE_OPTIONS`, each with its allowed
  values; `load-restrictor` only `LoadRestrictionsRootOnly`;
- every value is one argument joined to its flag (`--flag=value`), never an
  argument of its own, and the positional arguments come after `--`;
- values are plain: no leading `-`, no control characters, no `,` where helm
  would split a list into more values;
- a Helm release name and a namespace are DNS-1123 names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from shared.config.types import _show

__all__ = [
    "KUSTOMIZE_OPTIONS",
    "helm_list_value_problem",
    "kustomize_flags",
    "kustomize_option_problem",
    "namespace_problem",
    "plain_value_problem",
    "release_name_problem",
    "repository_problem",
    "set_value_problem",
]

_BOOLEAN: Final = frozenset({"", "true", "false"})
_ROOT_ONLY: Final = "LoadRestrictionsRootOnly"

#: `kustomize build` flags a config may pass, each with the values it may take.
KUSTOMIZE_OPTIONS: Final[Mapping[str, frozenset[str]]] = {
    "load-restrictor": frozenset({_ROOT_ONLY}),
    "enable-helm": _BOOLEAN,
    "reorder": frozenset({"legacy", "none"}),
    "enable-managedby-label": _BOOLEAN,
    "stack-trace": _BOOLEAN,
}

_WHY_NOT_LOAD_NONE: Final = (
    "LoadRestrictionsNone is not allowed: it lets a kustomization read files outside "
    "its directory, up to the host's own files; keep the default LoadRestrictionsRootOnly "
    "and move shared files into the kustomization's directory or a base it references"
)

# Kubernetes' DNS-1123 label (namespaces) and subdomain (Helm release names, at most 53).
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN: Final = re.compile(rf"{_DNS_LABEL.pattern}(\.{_DNS_LABEL.pattern})*")
_RELEASE_MAX: Final = 53
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def kustomize_option_problem(key: str, value: str) -> str | None:
    """Why `key: value` may not be passed to kustomize, or None when it may."""
    name = _flag_name(key)
    allowed = KUSTOMIZE_OPTIONS.get(name)
    if allowed is None:
        return (
            f'kustomize option "{key}" is not allowed (it could run programs from the '
            f"repository); allowed: {', '.join(sorted(KUSTOMIZE_OPTIONS))}"
        )
    if name == "load-restrictor" and value == "LoadRestrictionsNone":
        return _WHY_NOT_LOAD_NONE
    if value not in allowed:
        choices = ", ".join(f'"{v}"' for v in sorted(allowed))
        return f"kustomize option {key} takes one of {choices}; got {_show(value)}"
    return None


def kustomize_flags(options: Mapping[str, str]) -> list[str]:
    """The allowed options as flags, each value joined to its flag; ValueError if one is not.

    The load restrictor is always given, so no default elsewhere can loosen it.
    """
    flags = [f"--load-restrictor={_ROOT_ONLY}"]
    for key, value in options.items():
        problem = kustomize_option_problem(key, value)
        if problem is not None:
            raise ValueError(problem)
        name = _flag_name(key)
        if name != "load-restrictor":
            flags.append(f"--{name}={value}" if value else f"--{name}")
    return flags


def plain_value_problem(value: str) -> str | None:
    """Why `value` cannot be a tool argument's value (it could read as an option), or None."""
    if value.startswith("-"):
        return f"must not start with '-' (it would be read as an option); got {_show(value)}"
    if _CONTROL.search(value):
        return "must not contain control characters or line breaks"
    return None


def helm_list_value_problem(value: str) -> str | None:
    """`plain_value_problem`, and no `,`: helm splits these flags' values into more values."""
    if "," in value:
        return f"must not contain ',' (helm would read it as two values); got {_show(value)}"
    return plain_value_problem(value)


def release_name_problem(name: str) -> str | None:
    """Why `name` is not a Helm release name (a DNS-1123 subdomain of at most 53), or None."""
    if len(name) > _RELEASE_MAX or not _DNS_SUBDOMAIN.fullmatch(name):
        return (
            "a Helm release name must be lowercase letters, digits, '-' and '.', "
            f"start and end with a letter or digit, at most {_RELEASE_MAX} characters; "
            f"got {_show(name)}"
        )
    return None


def namespace_problem(namespace: str) -> str | None:
    """Why `namespace` is not a Kubernetes namespace name (a DNS-1123 label), or None."""
    if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        return (
            "a namespace must be lowercase letters, digits and '-', start and end with "
            f"a letter or digit, at most 63 characters; got {_show(namespace)}"
        )
    return None


def _flag_name(key: str) -> str:
    # PipeCD's docs spell them kustomize v3's way (load_restrictor); v4+ wants dashes.
    return key.replace("_", "-")


# A `--set` key: a value path like a.b[0].c (helm's strvals), nothing that reads as more.
_SET_KEY: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\\\[\]/-]*")
_REPOSITORY_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def set_value_problem(key: str, value: str) -> str | None:
    """Why `key=value` cannot go to helm as `--set=key=value` (PipeCD's setValues), or None.

    The value is one argument joined to its flag, so it cannot add an option; helm's
    own syntax in it (`a,b=c`, `{x,y}`) sets chart values only, as in PipeCD.
    """
    if not _SET_KEY.fullmatch(key):
        return f"a setValues key is a value path like a.b[0].c; got {_show(key)}"
    if _CONTROL.search(value):
        return "must not contain control characters or line breaks"
    return None


def repository_problem(repository: str) -> str | None:
    """Why `repository` is not a chart repository's name, an `oci://` registry path or a
    repository's http(s) URL, or None."""
    if repository.startswith(("https://", "http://", "oci://")):
        return plain_value_problem(repository)
    if not _REPOSITORY_NAME.fullmatch(repository):
        return (
            "expected the name of a chart repository helm knows (helm repo add), an oci:// "
            f"registry path or a repository's https:// URL; got {_show(repository)}"
        )
    return None
