"""Push webhooks, pure: verify GitHub and GitLab deliveries and read what they say was pushed.

GitHub signs the raw body with HMAC-SHA256 under the webhook secret and sends
`X-Hub-Signature-256: sha256=<hex>`; GitLab sends the secret itself as
`X-Gitlab-Token`. Both are compared in constant time. The verdict functions
return None when a delivery is genuine and otherwise the reason it is not,
in words fit for a `WebhookRejected` event (never echoing what was sent).

A delivery names its repository by URL (several spellings: https, ssh,
scp-like); `normalize_remote` reduces each to `host/path` so a payload can be
matched to a configured remote whatever form either uses.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

import msgspec

from shared.errors import SlipwayError

__all__ = [
    "Provider",
    "PushEvent",
    "WebhookPayloadError",
    "github_signature",
    "match_repository",
    "normalize_remote",
    "parse_github_push",
    "parse_gitlab_push",
    "payload_urls",
    "pushed_ref",
    "verify_github",
    "verify_gitlab",
]

Provider = Literal["github", "gitlab"]

_SIGNATURE_PREFIX: Final = "sha256="
_SCP_LIKE: Final = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^/:]+):(?P<path>[^/].*)$")
_ZERO_COMMIT: Final = "0" * 40

_decoder = msgspec.json.Decoder()


class WebhookPayloadError(SlipwayError, ValueError):
    """The body is not the JSON push payload the provider documents."""


@dataclass(frozen=True, slots=True)
class PushEvent:
    """What a push delivery says: which repository, which branch, which new head."""

    provider: Provider
    repository_urls: tuple[str, ...]
    ref: str
    after: str
    before: str = ""

    @property
    def branch(self) -> str:
        """The pushed branch, or "" for a tag or anything else."""
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else ""

    @property
    def deleted(self) -> bool:
        """Whether the push deleted the branch (`after` is all zeros)."""
        return self.after == _ZERO_COMMIT


# Verification ------------------------------------------------------------------


def github_signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return _SIGNATURE_PREFIX + digest


def verify_github(secret: str, body: bytes, signature: str | None) -> str | None:
    """None if `signature` (the X-Hub-Signature-256 header) signs `body`; else why not."""
    if not secret:
        return "no webhook secret is configured for this repository"
    if not signature:
        return "missing X-Hub-Signature-256 header"
    if not signature.startswith(_SIGNATURE_PREFIX):
        return "X-Hub-Signature-256 is not a sha256= signature"
    expected = github_signature(secret, body).encode()
    if not hmac.compare_digest(expected, signature.strip().encode(errors="replace")):
        return "signature does not match the body"
    return None


def verify_gitlab(secret: str, token: str | None) -> str | None:
    """None if `token` (the X-Gitlab-Token header) is the secret; else why not."""
    if not secret:
        return "no webhook secret is configured for this repository"
    if not token:
        return "missing X-Gitlab-Token header"
    if not hmac.compare_digest(secret.encode(), token.encode(errors="replace")):
        return "token does not match"
    return None


# Payloads ----------------------------------------------------------------------


def _decode(body: bytes) -> dict[str, Any]:
    try:
        payload = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise WebhookPayloadError(f"body is not JSON: {exc}") from None
    except RecursionError:  # a signed body can still nest deeper than the decoder's stack
        raise WebhookPayloadError("body is not JSON: nested too deeply") from None
    if not isinstance(payload, dict):
        raise WebhookPayloadError("body is not a JSON object")
    return payload


def _strings(mapping: object, keys: tuple[str, ...]) -> list[str]:
    if not isinstance(mapping, dict):
        return []
    return [v for k in keys if isinstance(v := mapping.get(k), str) and v]


def payload_urls(provider: Provider, body: bytes) -> tuple[str, ...]:
    """Every repository URL a delivery of either provider mentions (for choosing the repository)."""
    payload = _decode(body)
    if provider == "github":
        return tuple(
            _strings(payload.get("repository"), ("clone_url", "ssh_url", "git_url", "html_url"))
        )
    return tuple(
        _strings(
            payload.get("project"),
            ("git_http_url", "git_ssh_url", "http_url", "ssh_url", "web_url"),
        )
        + _strings(payload.get("repository"), ("git_http_url", "git_ssh_url", "url", "homepage"))
    )


def _push(provider: Provider, body: bytes) -> PushEvent:
    payload = _decode(body)
    ref, after, before = payload.get("ref"), payload.get("after"), payload.get("before", "")
    if not isinstance(ref, str) or not isinstance(after, str):
        raise WebhookPayloadError("push payload lacks `ref` or `after`")
    return PushEvent(
        provider=provider,
        repository_urls=payload_urls(provider, body),
        ref=ref,
        after=after,
        before=before if isinstance(before, str) else "",
    )


def parse_github_push(body: bytes) -> PushEvent:
    """A GitHub `push` event payload."""
    return _push("github", body)


def parse_gitlab_push(body: bytes) -> PushEvent:
    """A GitLab `Push Hook` payload."""
    return _push("gitlab", body)


# Matching a payload to a configured repository ---------------------------------


def normalize_remote(url: str) -> str:
    """`host/path` of a git URL, for comparison: no scheme, user, port, `.git` or case.

    `https://github.com/Org/Repo.git`, `git@github.com:org/repo.git` and
    `ssh://git@github.com:22/org/repo` all become `github.com/org/repo`; a
    `file://` URL or a plain path becomes its normalised path.
    """
    text = url.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme == "file":
            return _clean_path(unquote(parts.path), lower=False)
        host = (parts.hostname or "").lower()
        return host + "/" + _clean_path(unquote(parts.path), lower=True)
    scp = _SCP_LIKE.match(text)
    if scp and not text.startswith("/"):
        return scp["host"].lower() + "/" + _clean_path(scp["path"], lower=True)
    return _clean_path(text, lower=False)


def _clean_path(path: str, *, lower: bool) -> str:
    cleaned = posixpath.normpath(path) if path else ""
    cleaned = cleaned.rstrip("/").removesuffix(".git")
    cleaned = cleaned if cleaned.startswith("/") and not lower else cleaned.lstrip("/")
    return cleaned.lower() if lower else cleaned


def match_repository(
    urls: tuple[str, ...], remotes: Mapping[str, tuple[str, str]], branch: str = ""
) -> str | None:
    """The configured repository (`{id: (remote, branch)}`) a delivery is for, if any.

    One of `urls` must name its remote; when several watched repositories
    share that remote (one per branch), the one watching `branch` wins.
    """
    wanted = {normalize_remote(u) for u in urls}
    matches = [rid for rid, (remote, _) in remotes.items() if normalize_remote(remote) in wanted]
    for repository_id in matches:
        if remotes[repository_id][1] == branch:
            return repository_id
    return matches[0] if matches else None


def pushed_ref(body: bytes) -> str:
    """The `ref` of a push payload of either provider ("" when it has none)."""
    ref = _decode(body).get("ref")
    return ref if isinstance(ref, str) else ""
