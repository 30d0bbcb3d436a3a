"""Query variables: `{{ .App.Name }}`, `{{ .K8s.Namespace }}`, `{{ .Variant.Name }}`,
`{{ .AppCustomArgs.x }}` and `{{ .VariantCustomArgs.x }}` in analysis queries and URLs.

PipeCD renders these with Go's text/template; analysis queries only ever use
plain field references, so that is all we accept. Anything else — an unknown
variable, a pipeline, a function — is a `TemplateError` naming it and the
variables there are, instead of Go's silent `<no value>` that would send
Prometheus a query matching nothing (and pass a THRESHOLD check on no data).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from shared.errors import ConfigError

__all__ = ["QueryArgs", "TemplateError", "app_args_used", "render"]

_ACTION: Final = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
_REFERENCE: Final = re.compile(r"^\.([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z0-9_-]+))?$")


class TemplateError(ConfigError):
    """A query or URL refers to a variable that does not exist (or is not a plain reference)."""


@dataclass(frozen=True)
class QueryArgs:
    """The values a query is rendered with, for one variant."""

    app_name: str
    namespace: str
    variant: str = ""
    app_args: Mapping[str, str] = field(default_factory=dict)
    variant_args: Mapping[str, str] = field(default_factory=dict)

    def lookup(self, group: str, name: str | None) -> str | None:
        """The value of `{{ .Group.Name }}`; None when unknown (the caller names the known ones)."""
        fixed = {
            ("App", "Name"): self.app_name,
            ("K8s", "Namespace"): self.namespace,
            ("Variant", "Name"): self.variant,
        }
        if name is None:
            return None
        if (group, name) in fixed:
            return fixed[group, name]
        if group == "AppCustomArgs":
            return self.app_args.get(name)
        if group == "VariantCustomArgs":
            return self.variant_args.get(name)
        return None

    def known(self) -> list[str]:
        """Every template name this context can fill, for an error message."""
        names = [".App.Name", ".K8s.Namespace", ".Variant.Name"]
        names += [f".AppCustomArgs.{k}" for k in sorted(self.app_args)]
        names += [f".VariantCustomArgs.{k}" for k in sorted(self.variant_args)]
        return names


def render(text: str, args: QueryArgs, *, what: str = "query") -> str:
    """`text` with every `{{ .X.Y }}` replaced; `TemplateError` for anything unknown."""

    def substitute(match: re.Match[str]) -> str:
        action = match.group(1)
        reference = _REFERENCE.match(action)
        value = None
        if reference is not None:
            value = args.lookup(reference.group(1), reference.group(2))
        if value is None:
            raise TemplateError(
                f"{what}: unknown variable {{{{ {action} }}}}; known: {', '.join(args.known())}"
            )
        return value

    return _ACTION.sub(substitute, text)


def app_args_used(text: str) -> list[str]:
    """The `{{ .AppCustomArgs.x }}` names `text` refers to, each once, in order: what a
    stage's `appArgs` must give for `render` to succeed (checked before anything runs)."""
    names: dict[str, None] = {}
    for match in _ACTION.finditer(text):
        reference = _REFERENCE.match(match.group(1))
        if reference is not None and reference.group(1) == "AppCustomArgs" and reference.group(2):
            names.setdefault(reference.group(2))
    return list(names)
