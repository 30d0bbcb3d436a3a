"""Service account tokens: the `serviceaccounts/{name}/token` subresource (a `TokenRequest`).

`kubectl create token NAME [--duration D] [--audience A] [--bound-object-kind K
--bound-object-name N]` POSTs an `authentication.k8s.io/v1` TokenRequest and
prints `status.token`. The API server checks `spec.expirationSeconds` against
its bounds (at least 10 minutes, at most 2^32 seconds; 3600 when absent),
binds the token to an existing Pod, Secret or Node when asked, and answers
with the token and its `expirationTimestamp`.

The token has a JWT's shape and claims (`iss`, `sub`
`system:serviceaccount:<ns>:<name>`, `aud`, `exp`, `iat`, `nbf`, `jti` and the
`kubernetes.io` claim naming the namespace, service account and bound object),
signed with HS256 under a key each `TokenIssuer` draws at start, where a real
server signs RS256 with its service-account key: `TokenIssuer.verify` reads
one back. kubesim has no authentication (`kubesim.access`): every request acts
as one user whatever bearer token it carries, so a client may present these
tokens and is never refused for them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from kubesim import errors
from kubesim.store import Obj

__all__ = [
    "BOUND_KINDS",
    "DEFAULT_EXPIRATION_S",
    "ISSUER",
    "MAX_EXPIRATION_S",
    "MIN_EXPIRATION_S",
    "BoundObject",
    "TokenIssuer",
    "bound_reference",
    "now_utc",
    "requested_audiences",
    "requested_expiration",
]

GROUP = "authentication.k8s.io"
API_VERSION = f"{GROUP}/v1"
ISSUER = "https://kubernetes.default.svc.cluster.local"
"""The issuer and default audience of a kube-apiserver run with the usual flags."""

# Kubernetes' own bounds (pkg/apis/authentication/validation) and kube-apiserver's default.
MIN_EXPIRATION_S = 10 * 60
MAX_EXPIRATION_S = 1 << 32
DEFAULT_EXPIRATION_S = 3600

# What a token may be bound to, by kind: the resource it names and whether it is namespaced.
BOUND_KINDS = {"Pod": ("pods", True), "Secret": ("secrets", True), "Node": ("nodes", False)}

BoundObject = tuple[str, Obj]
"""A bound object's kind (`Pod`, `Secret`, `Node`) and the stored object."""


def requested_expiration(body: Any, name: str) -> int:
    """The lifetime the TokenRequest `body` asks for, in seconds, or the 422 Kubernetes answers."""
    seconds = _spec(body).get("expirationSeconds")
    if seconds is None:
        return DEFAULT_EXPIRATION_S
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise errors.bad_request(f"spec.expirationSeconds: expected an integer, got {seconds!r}")
    if seconds < MIN_EXPIRATION_S:
        why = "may not specify a duration less than 10 minutes"
    elif seconds > MAX_EXPIRATION_S:
        why = "may not specify a duration larger than 2^32 seconds"
    else:
        return seconds
    cause = errors.Cause("spec.expirationSeconds", f"Invalid value: {seconds}: {why}")
    raise errors.invalid("TokenRequest", GROUP, name, [cause])


def requested_audiences(body: Any) -> list[str]:
    """The audiences the request names, or the API server's own when it names none."""
    audiences = _spec(body).get("audiences")
    if not audiences:
        return [ISSUER]
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise errors.bad_request("spec.audiences: expected a list of strings")
    return list(audiences)


def bound_reference(body: Any) -> dict[str, str] | None:
    """The `spec.boundObjectRef` asked for (kind, name, optional uid), checked for shape."""
    ref = _spec(body).get("boundObjectRef")
    if ref is None:
        return None
    if not isinstance(ref, dict) or not all(isinstance(v, str) for v in ref.values()):
        raise errors.bad_request("spec.boundObjectRef: expected an object of strings")
    kind = ref.get("kind", "")
    if kind not in BOUND_KINDS:
        supported = ", ".join(f'"{k}"' for k in sorted(BOUND_KINDS))
        cause = errors.Cause(
            "spec.boundObjectRef.kind",
            f'Unsupported value: "{kind}": supported values: {supported}',
            "FieldValueNotSupported",
        )
        raise errors.invalid("TokenRequest", GROUP, "", [cause])
    if not ref.get("name"):
        cause = errors.Cause("spec.boundObjectRef.name", "Required value", "FieldValueRequired")
        raise errors.invalid("TokenRequest", GROUP, "", [cause])
    return {k: ref[k] for k in ("kind", "apiVersion", "name", "uid") if k in ref}


def _spec(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise errors.bad_request("a TokenRequest must be an object")
    if body.get("apiVersion") not in (None, API_VERSION) or body.get("kind") not in (
        None,
        "TokenRequest",
    ):
        raise errors.bad_request(
            f"expected {API_VERSION} TokenRequest, got {body.get('apiVersion')} {body.get('kind')}"
        )
    spec = body.get("spec") or {}
    if not isinstance(spec, dict):
        raise errors.bad_request("spec: a TokenRequest's spec must be an object")
    return spec


class TokenIssuer:
    """Signs service account tokens with a key of its own and reads them back."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)
        self.key_id = hashlib.sha256(self._key).hexdigest()[:16]

    def token_request(
        self,
        service_account: Obj,
        body: Any,
        now: datetime,
        bound: BoundObject | None = None,
    ) -> Obj:
        """The TokenRequest answer for `service_account`: the signed token and when it expires."""
        meta = service_account["metadata"]
        name, namespace = meta["name"], meta.get("namespace", "")
        expiration = requested_expiration(body, name)
        audiences = requested_audiences(body)
        issued = now.replace(microsecond=0)
        expires = issued + timedelta(seconds=expiration)
        identity: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": meta.get("uid", "")},
        }
        ref = None
        if bound is not None:
            kind, obj = bound
            identity[kind.lower()] = {
                "name": obj["metadata"]["name"],
                "uid": obj["metadata"].get("uid", ""),
            }
            ref = {
                "kind": kind,
                "apiVersion": "v1",
                "name": obj["metadata"]["name"],
                "uid": obj["metadata"].get("uid", ""),
            }
        claims = {
            "aud": audiences,
            "exp": int(expires.timestamp()),
            "iat": int(issued.timestamp()),
            "iss": ISSUER,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": identity,
            "nbf": int(issued.timestamp()),
            "sub": f"system:serviceaccount:{namespace}:{name}",
        }
        return {
            "kind": "TokenRequest",
            "apiVersion": API_VERSION,
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": {
                "audiences": audiences,
                "expirationSeconds": expiration,
                "boundObjectRef": ref,
            },
            "status": {
                "token": self.sign(claims),
                "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }

    def sign(self, claims: dict[str, Any]) -> str:
        """`header.claims.signature`, each base64url without padding, as a JWT is."""
        header = {"alg": "HS256", "kid": self.key_id, "typ": "JWT"}
        signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}"
        return f"{signing_input}.{_b64(self._mac(signing_input))}"

    def verify(self, token: str, now: datetime) -> dict[str, Any] | None:
        """The claims of a token this issuer signed that has not expired, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        signing_input = f"{parts[0]}.{parts[1]}"
        try:
            signature = _unb64(parts[2])
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._mac(signing_input)):
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
            return None
        return claims if now.timestamp() < claims["exp"] else None

    def _mac(self, signing_input: str) -> bytes:
        return hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()


def now_utc() -> datetime:
    """The issuer's clock (the API handler reads it; the functions above take it)."""
    return datetime.now(UTC)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64url") from exc
