r"""API errors as the real API server returns them: `Status` objects with a reason and code.

Clients branch on `reason` and `code` (kubectl prints `message`; client-go's
`IsNotFound`, `IsConflict`… read `reason`), so every failure the emulator can
produce goes through `ApiError`, whose `status()` is the exact JSON shape:

    {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
     "message": "deployments.apps \"web\" not found", "reason": "NotFound",
     "details": {"name": "web", "group": "apps", "kind": "deployments"}, "code": 404}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One field-level reason an object is invalid (`details.causes[]`)."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"


@dataclass
class ApiError(Exception):
    """A request the API server refuses; `status()` is the body to send."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        """The error as a Kubernetes `Status` object, the body every failed request returns."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def qualified(plural: str, group: str) -> str:
    """`deployments.apps`, or just `pods` for the core group, as messages name resources."""
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    """404: the named object does not exist."""
    return ApiError(
        404,
        "NotFound",
        f'{qualified(plural, group)} "{name}" not found',
        {"name": name, "group": group, "kind": plural},
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    """409: create of a name already taken."""
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(plural, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    """409: a write lost to a newer resourceVersion or a failed precondition (`why`)."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        {"name": name, "group": group, "kind": plural},
    )


def stale(plural: str, group: str, name: str) -> ApiError:
    """The optimistic-concurrency failure: the caller's resourceVersion is not the stored one."""
    return conflict(
        plural,
        group,
        name,
        "the object has been modified; please apply your changes to the latest version"
        " and try again",
    )


def invalid(kind: str, group: str, name: str, causes: Sequence[Cause]) -> ApiError:
    """422: the object failed validation; each cause names its field."""
    summary = ", ".join(f"{c.field}: {c.message}" for c in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    return ApiError(
        422,
        "Invalid",
        f'{qualified(kind, group)} "{name}" is invalid: {summary}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": c.reason, "message": c.message, "field": c.field} for c in causes
            ],
        },
    )


def forbidden(plural: str, group: str, name: str, verb: str, namespace: str, user: str) -> ApiError:
    """403: a forbidden rule matched, worded as the API server's RBAC denial."""
    subject = f'{qualified(plural, group)} "{name}"' if name else qualified(plural, group)
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    return ApiError(
        403,
        "Forbidden",
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{plural}"'
        f' in API group "{group}"{where}',
        {"name": name, "group": group, "kind": plural},
    )


def bad_request(message: str) -> ApiError:
    """400: a request kubesim cannot parse."""
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method") -> ApiError:
    """405: a verb the resource does not serve."""
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    """415: a body in a format kubesim does not decode (e.g. protobuf)."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format: {content_type}",
    )


def expired(requested: int, oldest: int) -> ApiError:
    """A watch asked for history the server no longer keeps: the client must re-list."""
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")
