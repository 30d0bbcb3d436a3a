"""An API caller's and a webhook sender's attacks: calls above a role, keys that should not
work, answers that should not say what they say, and deliveries that should not be read.

Refused means the status the rule calls for (401/403 for a role, 409 for a taken key
name, 413 for an oversized body, 4xx for a forged delivery) and no effect.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any

from benchmarks.security.harness import Attack, Outcome, Target

__all__ = ["attacks"]

FAMILY_ROLES = "roles"
FAMILY_WEBHOOK = "webhook"

# (method, path, body) of every route that changes something, with the least role it needs.
_Route = tuple[str, str, dict[str, Any] | None]
_WRITE_ROUTES: tuple[_Route, ...] = (
    ("POST", "/applications", {"name": "x", "repository_id": "config", "path": "x"}),
    ("POST", "/applications/account-dev/sync", {}),
    ("POST", "/applications/account-dev/disable", {}),
    ("POST", "/applications/account-dev/enable", {}),
    ("POST", "/deployments/nosuch/cancel", {}),
    ("POST", "/deployments/nosuch/stages/stage-0/approve", {}),
    ("POST", "/deployments/nosuch/stages/stage-0/skip", {}),
    ("POST", "/plan-preview", {"repository_id": "config", "head_branch": "main"}),
)
_ADMIN_ROUTES: tuple[_Route, ...] = (
    ("POST", "/api-keys", {"role": "admin", "name": "escalated"}),
    ("GET", "/api-keys", None),
    ("DELETE", "/api-keys/nosuch", None),
    ("DELETE", "/applications/account-dev", None),
)
_READ_ROUTES: tuple[_Route, ...] = (
    ("GET", "/applications", None),
    ("GET", "/deployments", None),
    ("GET", "/events", None),
    ("GET", "/events/streams/application-x", None),
)


def _refused(method: str, path: str, body: object, role: str | None, key: str | None) -> Attack:
    label = role or ("garbage-key" if key else "no-key")

    async def run(target: Target) -> Outcome:
        secret = key if key is not None else (target.keys[role] if role else None)
        answer = await target.http(method, f"{target.api_url}/api/v1{path}", key=secret, json=body)
        return Outcome(answer.status in (401, 403), f"HTTP {answer.status}")

    return Attack(FAMILY_ROLES, f"{label}-{method}-{path}", run)


async def _revoked_key(target: Target) -> Outcome:
    created = await target.api("POST", "/api-keys", json={"role": "admin", "name": "to-revoke"})
    body = json.loads(created.text)
    await target.api("DELETE", f"/api-keys/{body['key']['key_id']}")
    for _ in range(10):  # the API caches keys for a few seconds; a revocation must win within it
        answer = await target.http(
            "GET", f"{target.api_url}/api/v1/applications", key=body["secret"]
        )
        if answer.status == 401:
            return Outcome(True, "401 after revocation")
        await asyncio.sleep(0.5)
    return Outcome(False, f"still {answer.status} 5 s after revocation")


async def _duplicate_key_name(target: Target) -> Outcome:
    """Key names are approvers' identities: a second "alice" could approve as alice."""
    await target.api("POST", "/api-keys", json={"role": "read-write", "name": "alice-approver"})
    second = await target.api(
        "POST", "/api-keys", json={"role": "read-write", "name": "alice-approver"}
    )
    return Outcome(second.status == 409, f"HTTP {second.status}")


async def _hashes_hidden(target: Target) -> Outcome:
    answer = await target.api("GET", "/api-keys")
    leaked = "hash" in answer.text.lower()
    return Outcome(not leaked, "a key hash in the listing" if leaked else "no hash")


async def _driver_text(target: Target) -> Outcome:
    """Inputs that once reached the driver: the answer names a request id, not the driver."""
    answers = [
        await target.api("GET", "/events?min_position=99999999999999999999999999"),
        await target.api("GET", "/deployments?cursor=-1"),
        await target.api("GET", "/events/streams/" + "a" * 5000),
    ]
    for answer in answers:
        lowered = answer.text.lower()
        if "asyncpg" in lowered or "postgres" in lowered or "traceback" in lowered:
            return Outcome(False, f"HTTP {answer.status}: {answer.text[:120]}")
    return Outcome(True, ", ".join(str(a.status) for a in answers))


async def _unbounded_stream_page(target: Target) -> Outcome:
    answer = await target.api("GET", "/events/streams/apikey-x?limit=100000")
    return Outcome(answer.status == 400, f"HTTP {answer.status}")


async def _declared_huge_webhook(target: Target) -> Outcome:
    """A declared gigabyte with one byte sent: refused at once, not waited for and buffered."""
    url = target.webhook_url.removeprefix("http://")
    host, port = url.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{"
        )
        await writer.drain()
        try:
            status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        except TimeoutError:
            return Outcome(False, "no answer within 5 s: the server waits for the gigabyte")
    finally:
        writer.close()
    text = status_line.decode(errors="replace").strip()
    target.answers.append(text)
    return Outcome(" 413 " in f"{text} ", text)


async def _api_body_cap(target: Target) -> Outcome:
    body = b'{"name": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    answer = await target.http(
        "POST",
        f"{target.api_url}/api/v1/applications",
        key=target.keys["read-write"],
        data=body,
        headers={"Content-Type": "application/json"},
    )
    return Outcome(answer.status == 413, f"HTTP {answer.status}")


# --- webhooks ---------------------------------------------------------------------------------


def _push_body(target: Target) -> bytes:
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "after": "0" * 39 + "1",
            "repository": {"clone_url": target.repo.resolve().as_uri()},
        }
    ).encode()


def _signed(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _webhook(
    name: str, make: Callable[[Target], tuple[bytes, dict[str, str]]], ok: Callable[[int], bool]
) -> Attack:
    async def run(target: Target) -> Outcome:
        body, headers = make(target)
        answer = await target.http(
            "POST", f"{target.webhook_url}/webhooks/github", data=body, headers=headers
        )
        return Outcome(ok(answer.status), f"HTTP {answer.status}")

    return Attack(FAMILY_WEBHOOK, name, run)


def _github_headers(signature: str | None) -> dict[str, str]:
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return headers


def _webhook_attacks() -> list[Attack]:
    def rejected(status: int) -> bool:
        return 400 <= status < 500

    def oversized(target: Target) -> tuple[bytes, dict[str, str]]:
        body = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        return body, _github_headers(_signed(target.webhook_secret, body))

    def oversized_unsigned(_target: Target) -> tuple[bytes, dict[str, str]]:
        return b"[" * (4 * 1024 * 1024), _github_headers("sha256=" + "0" * 64)

    def bad_signature(target: Target) -> tuple[bytes, dict[str, str]]:
        return _push_body(target), _github_headers("sha256=" + "0" * 64)

    def no_signature(target: Target) -> tuple[bytes, dict[str, str]]:
        return _push_body(target), _github_headers(None)

    def wrong_secret(target: Target) -> tuple[bytes, dict[str, str]]:
        body = _push_body(target)
        return body, _github_headers(_signed(secrets.token_hex(8), body))

    def signed_garbage(target: Target) -> tuple[bytes, dict[str, str]]:
        body = b"\x00\xff{not json"
        return body, _github_headers(_signed(target.webhook_secret, body))

    def signed_deep_nesting(target: Target) -> tuple[bytes, dict[str, str]]:
        body = b"[" * 100_000 + b"]" * 100_000
        return body, _github_headers(_signed(target.webhook_secret, body))

    def sha1_downgrade(target: Target) -> tuple[bytes, dict[str, str]]:
        body = _push_body(target)
        sha1 = "sha1=" + hmac.new(target.webhook_secret.encode(), body, hashlib.sha1).hexdigest()
        return body, {"X-GitHub-Event": "push", "X-Hub-Signature": sha1}

    return [
        _webhook("oversized-signed-2MiB", oversized, lambda s: s == 413),
        _webhook("oversized-unsigned-4MiB", oversized_unsigned, rejected),
        _webhook("bad-signature", bad_signature, rejected),
        _webhook("no-signature", no_signature, rejected),
        _webhook("wrong-secret", wrong_secret, rejected),
        _webhook("signed-garbage", signed_garbage, rejected),
        _webhook("signed-deep-nesting", signed_deep_nesting, rejected),
        _webhook("sha1-downgrade", sha1_downgrade, rejected),
    ]


def attacks() -> list[Attack]:
    """The API attacks: every route without a key, with a made-up key, with a weaker role."""
    found: list[Attack] = []
    for method, path, body in _WRITE_ROUTES + _ADMIN_ROUTES + _READ_ROUTES:
        found.append(_refused(method, path, body, None, None))
        found.append(_refused(method, path, body, None, "slipway_" + secrets.token_hex(16)))
    for method, path, body in _WRITE_ROUTES + _ADMIN_ROUTES:
        found.append(_refused(method, path, body, "read-only", None))
    for method, path, body in _ADMIN_ROUTES:
        found.append(_refused(method, path, body, "read-write", None))
    found += [
        Attack(FAMILY_ROLES, "revoked-key", _revoked_key),
        Attack(FAMILY_ROLES, "duplicate-key-name", _duplicate_key_name),
        Attack(FAMILY_ROLES, "key-hashes-hidden", _hashes_hidden),
        Attack(FAMILY_ROLES, "driver-text", _driver_text),
        Attack(FAMILY_ROLES, "api-body-8MiB", _api_body_cap),
        Attack(FAMILY_ROLES, "unbounded-stream-page", _unbounded_stream_page),
        Attack(FAMILY_WEBHOOK, "declared-1GB-body", _declared_huge_webhook),
    ]
    return found + _webhook_attacks()
