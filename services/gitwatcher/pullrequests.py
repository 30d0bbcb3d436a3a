"""Opening a GitHub pull request for a branch the event watcher pushed (`makePullRequest`).

GitHub's REST API (`POST /repos/{owner}/{repo}/pulls`), at a configurable
base URL (GitHub Enterprise's is `https://<host>/api/v3`), with the token of
the control config's `eventWatcher.gitRepos[].pullRequest.tokenFile` and
nothing else. A pull request that exists already for the branch (422, after a
retry) is looked up instead of opened twice. The answer is untrusted: read up
to 1 MiB, and only its `html_url` (a string) is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import msgspec

from shared.errors import Rejected, Unavailable

__all__ = ["PullRequestError", "PullRequests", "github_repository_of"]

_MAX_ANSWER_BYTES: Final = 1024 * 1024
_TIMEOUT_S: Final = 30.0
_REMOTE: Final = re.compile(
    r"^(?:[a-z+]+://(?:[^@/]+@)?[^/]+/|[^@:/]+@[^:]+:)(?P<owner>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.-]+?)(?:\.git)?/?$"
)


class PullRequestError(Rejected):
    """The API refused to open the pull request (bad token, no such repository)."""


def github_repository_of(remote: str) -> str:
    """`owner/name` of a GitHub remote URL (https, ssh or scp-like); "" if it names none."""
    match = _REMOTE.match(remote)
    return f"{match['owner']}/{match['name']}" if match else ""


class _PullAnswer(msgspec.Struct):
    html_url: str


@dataclass(frozen=True, slots=True)
class PullRequests:
    """One repository's pull requests on a GitHub API."""

    api_url: str
    repository: str
    """`owner/name`."""
    token: str

    async def open(self, *, branch: str, base: str, title: str, body: str) -> str:
        """Open a pull request of `branch` into `base`; its web URL."""
        owner = self.repository.split("/", 1)[0]
        pulls = f"{self.api_url.rstrip('/')}/repos/{self.repository}/pulls"
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=_TIMEOUT_S), headers=self._headers()
        ) as session:
            payload = {"title": title, "head": branch, "base": base, "body": body}
            status, answer = await _call(session, "POST", pulls, json=payload)
            if status == 201:
                return _url_of(answer)
            if status == 422:  # exists already (a retry): find it
                status, listed = await _call(
                    session,
                    "GET",
                    pulls,
                    params={"head": f"{owner}:{branch}", "base": base, "state": "all"},
                )
                if status == 200 and isinstance(listed, list) and listed:
                    return _url_of(listed[0])
            if status >= 500 or status == 429:
                raise Unavailable(f"{pulls}: the API answered {status}")
            raise PullRequestError(f"{pulls}: the API refused the pull request ({status})")

    def _headers(self) -> dict[str, str]:
        return {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "slipway-event-watcher",
        }


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, Any]:
    try:
        async with session.request(method, url, allow_redirects=False, **kw) as response:
            raw = await response.content.read(_MAX_ANSWER_BYTES + 1)
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Unavailable(f"{method} {url}: {exc}") from exc
    if len(raw) > _MAX_ANSWER_BYTES:
        raise PullRequestError(f"{method} {url}: answer over {_MAX_ANSWER_BYTES} bytes")
    try:
        return status, msgspec.json.decode(raw) if raw else None
    except msgspec.DecodeError:
        return status, None


def _url_of(answer: Any) -> str:
    try:
        return msgspec.convert(answer, _PullAnswer).html_url[:2048]
    except msgspec.ValidationError as exc:
        raise PullRequestError(f"the API's answer has no html_url: {exc}") from None
