"""Label and field selectors: the query-string syntax and the `LabelSelector` object.

Query syntax (`?labelSelector=`): comma-separated requirements, each one of
`k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k>n`, `k<n`.
Field selectors (`?fieldSelector=`) accept `=`, `==` and `!=` on any dotted
path of the object (`metadata.name`, `status.phase`, `involvedObject.name`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubesim.errors import bad_request


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: a key, an operator and its values."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether `labels` satisfy this term."""
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            # As in Kubernetes: a missing label satisfies `!=` and `notin`.
            return not present or value not in self.values
        if not present:
            return False
        try:
            number, bound = int(value), int(self.values[0])
        except ValueError:
            return False
        return number > bound if self.op == "gt" else number < bound


LabelSelector = tuple[Requirement, ...]

_SET_RE = re.compile(r"^\s*([^\s!=<>,()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_CMP_RE = re.compile(r"^\s*([^\s!=<>,()]+)\s*(==|=|!=|>|<)\s*([^\s,()]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(!?)\s*([^\s!=<>,()]+)\s*$")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse `?labelSelector=`; a malformed selector is a 400, as on a real server."""
    requirements: list[Requirement] = []
    for part in _split_top_level(text):
        if not part.strip():
            continue
        if m := _SET_RE.match(part):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            requirements.append(Requirement(m.group(1), m.group(2), values))
        elif m := _CMP_RE.match(part):
            op = {"==": "=", ">": "gt", "<": "lt"}.get(m.group(2), m.group(2))
            requirements.append(Requirement(m.group(1), op, (m.group(3),)))
        elif m := _EXISTS_RE.match(part):
            requirements.append(Requirement(m.group(2), "!" if m.group(1) else "exists"))
        else:
            raise bad_request(f"unable to parse requirement: {part.strip()!r}")
    return tuple(requirements)


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses, so `k in (a,b),x=y` is two requirements."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def from_label_selector_object(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A `metav1.LabelSelector` (`matchLabels` + `matchExpressions`) as requirements."""
    if not selector:
        return ()
    requirements = [
        Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()
    ]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(expr.get("operator", ""))
        if op is None:
            raise bad_request(f"invalid selector operator {expr.get('operator')!r}")
        requirements.append(Requirement(expr["key"], op, tuple(expr.get("values") or ())))
    return tuple(requirements)


def to_query(selector: LabelSelector) -> str:
    """The query-string form, as a Scale's `status.selector` reports it."""
    out = []
    for r in selector:
        if r.op == "=":
            out.append(f"{r.key}={r.values[0]}")
        elif r.op in ("in", "notin"):
            out.append(f"{r.key} {r.op} ({','.join(r.values)})")
        elif r.op == "exists":
            out.append(r.key)
        elif r.op == "!":
            out.append(f"!{r.key}")
        else:
            out.append(f"{r.key}{'>' if r.op == 'gt' else '<'}{r.values[0]}")
    return ",".join(out)


def labels_match(selector: LabelSelector, labels: Mapping[str, str] | None) -> bool:
    """Whether `labels` satisfy every term of `selector` (an empty selector matches all)."""
    return all(r.matches(labels or {}) for r in selector)


FieldSelector = Callable[[Mapping[str, Any]], bool]


def parse_field_selector(text: str) -> FieldSelector:
    """A predicate for a field selector such as `metadata.name=web,status.phase!=Running`."""
    terms: list[tuple[list[str], bool, str]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([\w.\-/]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise bad_request(f"invalid field selector: {part!r}")
        terms.append((m.group(1).split("."), m.group(2) != "!=", m.group(3)))

    def matches(obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, path) == want) == equal for path, equal, want in terms)

    return matches


def _field_value(obj: Mapping[str, Any], path: list[str]) -> str:
    node: Any = obj
    for step in path:
        if not isinstance(node, Mapping):
            return ""
        node = node.get(step)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)
