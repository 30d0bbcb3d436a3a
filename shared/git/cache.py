"""`GitCache`: one bare clone per remote under a root directory, one `GitRepository` object each."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from shared.git.command import DEFAULT_FETCH_TIMEOUT_S, DEFAULT_TIMEOUT_S, redact
from shared.git.repository import GitRepository


class GitCache:
    """Bare clones of remotes under `root`, one directory per remote URL."""

    def __init__(
        self,
        root: Path | str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        fetch_timeout_s: float = DEFAULT_FETCH_TIMEOUT_S,
        share_checkouts: bool = False,
    ) -> None:
        self.root = Path(root)
        self.timeout_s = timeout_s
        self.fetch_timeout_s = fetch_timeout_s
        self.share_checkouts = share_checkouts
        self._repositories: dict[str, GitRepository] = {}

    def repository(self, remote: str) -> GitRepository:
        """The cached clone of `remote` (the same object, and lock, for every call)."""
        repository = self._repositories.get(remote)
        if repository is None:
            repository = GitRepository(
                remote,
                self.root / _directory_name(remote),
                timeout_s=self.timeout_s,
                fetch_timeout_s=self.fetch_timeout_s,
                share_checkouts=self.share_checkouts,
            )
            self._repositories[remote] = repository
        return repository

    async def close(self) -> None:
        """Remove every repository's shared checkouts that nobody holds."""
        for repository in self._repositories.values():
            await repository.close()


def _directory_name(remote: str) -> str:
    """A readable, collision-free directory name for `remote`: `<last part>-<hash>.git`."""
    digest = hashlib.sha256(remote.encode()).hexdigest()[:16]
    last = redact(remote).rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", last).strip("._")[:40] or "repo"
    return f"{slug}-{digest}.git"
