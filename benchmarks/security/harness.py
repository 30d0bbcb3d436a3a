"""The attack harness: a running sandbox, a catalogue of attacks, and the evidence that judges them.

An attack is one thing an adversary can try (DESIGN §14): a branch that injects a
tool option, a symlink out of the repository, a forged NATS event, an API call
above its role, an analysis target on a private address. Each runs against the
real sandbox (every service a process, real PostgreSQL, NATS, kubesim, git) and
answers whether Slipway refused it.

What an attack *says* is not trusted on its own. Two kinds of evidence are
gathered outside the attack, after all of them ran:

- **executed**: every payload that would run code or write a file names a
  marker path under `Target.markers`; a marker that exists was executed.
- **leaked**: every secret an attack tries to exfiltrate is a unique canary
  string (`Target.canary`); the whole database (every row of every table of
  the sandbox's schema, events included), every service log, and every answer
  an attack received are searched for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

__all__ = ["Attack", "Outcome", "Target", "collect_evidence"]


@dataclass
class Outcome:
    """What an attack saw: refused (`blocked`) or let through, with the answer that says so."""

    blocked: bool
    detail: str = ""


@dataclass(frozen=True)
class Attack:
    """One attack: its family, name, and the coroutine that tries it against a target."""

    family: str
    name: str
    run: Callable[[Target], Awaitable[Outcome]]


@dataclass
class Answer:
    """An HTTP answer, kept whole so the leak scan can read it."""

    status: int
    text: str


@dataclass
class Target:
    """The sandbox under attack and the attacker's tools."""

    api_url: str
    keys: dict[str, str]
    """API secrets by role: admin, read-write, read-only."""
    repo: Path
    """The config repository's working tree (the sandbox's remote)."""
    repository_id: str
    database_url: str
    """What the services log in with."""
    superuser_url: str
    """The sandbox's superuser: the leak scan reads every table whatever its grants."""
    schema: str
    nats_url: str
    """The sandbox's all-permissions NATS user (what a leaked admin or relay password gives)."""
    nats_urls: dict[str, str]
    """Each service's own NATS login, by service name."""
    data_dir: Path
    webhook_url: str
    webhook_secret: str
    markers: Path
    """Outside the repository: payloads write here; anything here afterwards was executed."""
    outside: Path
    """Outside the repository: the files a symlink tries to read."""
    receiver_messages: Callable[[], list[dict[str, Any]]]
    canaries: dict[str, str] = field(default_factory=dict)
    """Canary string -> the attack that planted it."""
    answers: list[str] = field(default_factory=list)
    """Every text an attacker received (HTTP bodies, tool output), for the leak scan."""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- canaries and markers ----------------------------------------------------------------

    def canary(self, attack: str) -> str:
        """A fresh secret string owned by `attack`; finding it anywhere later is a leak."""
        # Lower case: a valid Kubernetes name too, so a manifest can carry it where a plan shows it.
        value = f"slipway-canary-{secrets.token_hex(8)}"
        self.canaries[value] = attack
        return value

    def marker(self, attack: str) -> Path:
        """A path under `markers` that only an executed payload of `attack` would create."""
        return self.markers / attack.replace("/", "_")

    def outside_file(self, attack: str, text: str) -> Path:
        """Write `text` to a file outside the repository (what a path escape would read)."""
        path = self.outside / f"{attack.replace('/', '_')}.yaml"
        path.write_text(text)
        return path

    def payload_script(self, attack: str) -> Path:
        """An executable outside the repository that creates the attack's marker when run."""
        script = self.markers / f"{attack.replace('/', '_')}.sh"
        script.write_text(f"#!/bin/sh\ntouch '{self.marker(attack)}'\n")
        script.chmod(0o755)
        return script

    # --- HTTP --------------------------------------------------------------------------------

    async def http(
        self,
        method: str,
        url: str,
        *,
        key: str | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 60.0,
    ) -> Answer:
        """An HTTP request to any URL, with an API key; never raises on a status."""
        sent = dict(headers or {})
        if key:
            sent["Authorization"] = f"Bearer {key}"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.request(method, url, json=json, data=data, headers=sent) as response,
        ):
            text = await response.text(errors="replace")
        self.answers.append(text)
        return Answer(response.status, text)

    async def api(
        self, method: str, path: str, *, role: str | None = "admin", json: Any = None
    ) -> Answer:
        """An API request as `role` (None: without a key)."""
        key = self.keys[role] if role else None
        return await self.http(method, f"{self.api_url}/api/v1{path}", key=key, json=json)

    # --- git ---------------------------------------------------------------------------------

    async def push_branch(
        self,
        branch: str,
        files: Mapping[str, str],
        *,
        symlinks: Mapping[str, str] | None = None,
        executables: Iterable[str] = (),
    ) -> str:
        """A branch off main with these files and symlinks (unmerged); its head commit."""
        async with self._lock:
            return await asyncio.to_thread(
                self._commit_on, branch, files, dict(symlinks or {}), tuple(executables), True
            )

    async def commit_main(
        self, files: Mapping[str, str], *, symlinks: Mapping[str, str] | None = None
    ) -> str:
        """Commit `files` (and symlinks) to the target repository's main branch."""
        async with self._lock:
            return await asyncio.to_thread(
                self._commit_on, "main", files, dict(symlinks or {}), (), False
            )

    def _commit_on(
        self,
        branch: str,
        files: Mapping[str, str],
        symlinks: Mapping[str, str],
        executables: tuple[str, ...],
        new_branch: bool,
    ) -> str:
        git = self._git
        git("checkout", "--quiet", "main")
        if new_branch:
            git("checkout", "--quiet", "-B", branch)
        for name, text in files.items():
            path = self.repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                path.unlink()
            path.write_text(text)
            if name in executables:
                path.chmod(0o755)
        for name, points_to in symlinks.items():
            path = self.repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() or path.exists():
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            os.symlink(points_to, path)
        git("add", "--all")
        git("commit", "--quiet", "--allow-empty", "-m", f"attack: {branch}")
        head = git("rev-parse", "HEAD")
        git("checkout", "--quiet", "main")
        return head

    def _git(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env |= {
            "GIT_AUTHOR_NAME": "attacker",
            "GIT_AUTHOR_EMAIL": "attacker@example.invalid",
            "GIT_COMMITTER_NAME": "attacker",
            "GIT_COMMITTER_EMAIL": "attacker@example.invalid",
        }
        done = subprocess.run(
            ["git", "-C", str(self.repo), *args],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        return done.stdout.strip()

    # --- the log -----------------------------------------------------------------------------

    async def wait_deployment(
        self,
        application: str,
        *,
        # Callers pass `after`; the newest deployment is the one the scenario just caused.
        after: float,  # noqa: ARG002
        within: float,  # callers pass it; the newest deployment is the one just caused
    ) -> dict[str, Any]:
        """The application's newest deployment once it has ended (or the last seen, on time-out)."""
        deadline = time.monotonic() + within
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = await self.api("GET", f"/deployments?application={application}&limit=1")
            if answer.status == 200:
                items = json.loads(answer.text).get("items", [])
                if items:
                    last = items[0]
                    if last.get("status") in ("SUCCESS", "FAILURE", "CANCELLED"):
                        return last
            await asyncio.sleep(0.5)
        return last


async def collect_evidence(target: Target) -> tuple[dict[str, set[str]], set[str]]:
    """Which attacks leaked (canary -> where found) and which executed (marker present)."""
    haystacks: list[tuple[str, str]] = [("api answer", text) for text in target.answers]
    for log in sorted((target.data_dir / "logs").glob("*.log")):
        haystacks.append((f"log {log.name}", log.read_text(errors="replace")))
    haystacks.extend(await _database_text(target))
    leaked: dict[str, set[str]] = {}
    for canary, attack in target.canaries.items():
        for where, text in haystacks:
            if canary in text:
                leaked.setdefault(attack, set()).add(where)
    executed = {path.name for path in target.markers.iterdir() if not path.name.endswith(".sh")}
    return leaked, executed


async def _database_text(target: Target) -> list[tuple[str, str]]:
    """Every row of every table of the sandbox's schema, as text (bytea payloads decoded)."""
    conn = await asyncpg.connect(target.superuser_url)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            target.schema,
        )
        found: list[tuple[str, str]] = []
        for row in tables:
            name = row["table_name"]
            rows = await conn.fetch(f'SELECT * FROM "{target.schema}"."{name}"')
            parts = []
            for record in rows:
                for value in record.values():
                    if isinstance(value, bytes | bytearray | memoryview):
                        parts.append(bytes(value).decode("utf-8", "replace"))
                    else:
                        parts.append(str(value))
            found.append((f"table {name}", "\n".join(parts)))
        return found
    finally:
        await conn.close()
