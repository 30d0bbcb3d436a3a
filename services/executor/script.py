"""SCRIPT_RUN's clean room: the environment a script gets, and how much of its output is kept.

A script is the config repository's code; it must not see the executor's
own environment (database and NATS URLs, `SLIPWAY_*` settings, the pod's
credentials). It gets only:

- `PATH` (a fixed, safe default), `HOME` and `TMPDIR` (a fresh temporary
  directory, removed afterwards), `LANG`;
- PipeCD's `SR_*` context (`SR_DEPLOYMENT_ID`, `SR_APPLICATION_ID`,
  `SR_APPLICATION_NAME`, `SR_TRIGGERED_AT`, `SR_TRIGGERED_COMMIT_HASH`,
  `SR_TRIGGERED_COMMANDER`, `SR_REPOSITORY_URL` (without credentials),
  `SR_SUMMARY`, `SR_IS_ROLLBACK`, `SR_LABELS_<KEY>`, and all of them as JSON in
  `SR_CONTEXT_RAW`);
- the stage's `with.env`, then its `with.secretEnv` (Slipway's extension:
  values that are never recorded, see `shared.planning.stages`).

Its output (stdout and stderr together) is read in chunks, never as a whole
line, so a 1 MiB line or a NUL byte costs nothing: each line is cut at
`max_line_bytes`, and a stage records at most `max_lines` lines and
`max_bytes` bytes; the rest is counted and summarized in one last line.
The process runs in its own process group, below a reaper (`reaper.py`, a
child subreaper) that kills everything below it — what left the group with
`setsid` too — at the timeout, when the stage is cancelled, and when the
script exits (nothing it started in the background outlives the stage); the
group is then killed whole as well. A cancellation kills it at once, even while
recording a line waits on a database that hangs: the lease's watchdog relies
on that (shared/leases.py).

Who runs it: an executor running as root never runs a script as root. The
script runs as `ScriptPolicy.run_as` (`nobody` by default), in a private copy
of the checkout owned by that account, so it can neither read the executor's
`/proc/<pid>/environ` (root's, another user's) nor the files only root may
read, nor change the executor. An executor that is not root (the image runs as
uid 10001) runs scripts as itself, and before the first one makes itself
non-dumpable (Linux `prctl(PR_SET_DUMPABLE, 0)`): its `/proc/<pid>/` files
(`environ`, `mem`, `fd`) then belong to root and `ptrace` is refused, so
`cat /proc/$PPID/environ` cannot give the script what its environment does not.
(Files the executor's own user can read stay readable to its scripts there:
mount secrets for the executor alone, or run scripts in their own pod.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import os
import pwd
import shutil
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from services.executor import reaper
from shared.errors import SlipwayError
from shared.redaction import redact

__all__ = [
    "SAFE_PATH",
    "OutputRecorder",
    "ScriptContext",
    "ScriptOutcome",
    "ScriptPolicy",
    "ScriptUserError",
    "forbid_inspection",
    "run_script",
    "script_account",
    "script_env",
]

SAFE_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
_CHUNK: Final = 64 * 1024
_TAIL_LINES: Final = 5
_TAIL_CHARS: Final = 200
_PR_SET_DUMPABLE: Final = 4
_REAPED: Final = (sys.executable, "-I", str(Path(reaper.__file__)))
"""Every script runs below `reaper.py`, which kills what escaped its process group."""
_REAPER_GRACE_S: Final = 1.0


@dataclass(frozen=True)
class ScriptPolicy:
    """How long a script may run by default, and how much of its output a stage keeps."""

    default_timeout_s: float = 6 * 3600.0
    """For a stage whose `with.timeout` is zero or missing (PipeCD's default is 6h)."""
    max_line_bytes: int = 4096
    max_lines: int = 2000
    max_bytes: int = 1024 * 1024
    run_as: str = "nobody"
    """The unprivileged account scripts run as when the executor runs as root (else unused)."""

    def timeout_of(self, configured_s: float) -> float:
        """The timeout a stage gets: its own, or the default when it has none (never forever)."""
        return configured_s if configured_s > 0 else self.default_timeout_s


@dataclass(frozen=True)
class ScriptContext:
    """What PipeCD tells a script about its deployment (the `SR_*` variables)."""

    deployment_id: str
    application_id: str
    application_name: str = ""
    triggered_at: int = 0
    """Unix seconds."""
    commit_hash: str = ""
    commander: str = ""
    repository_url: str = ""
    summary: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    is_rollback: bool = False

    def env(self) -> dict[str, str]:
        """The `SR_*` variables (PipeCD's names and `SR_CONTEXT_RAW`'s JSON keys)."""
        repository_url = redact(self.repository_url)  # a remote's credentials stay ours
        raw = {
            "deploymentID": self.deployment_id,
            "applicationID": self.application_id,
            "applicationName": self.application_name,
            "triggeredAt": self.triggered_at,
            "triggeredCommitHash": self.commit_hash,
            "triggeredCommander": self.commander,
            "repositoryURL": repository_url,
            "summary": self.summary,
            "labels": dict(self.labels),
            "isRollback": self.is_rollback,
        }
        env = {
            "SR_DEPLOYMENT_ID": self.deployment_id,
            "SR_APPLICATION_ID": self.application_id,
            "SR_APPLICATION_NAME": self.application_name,
            "SR_TRIGGERED_AT": str(self.triggered_at),
            "SR_TRIGGERED_COMMIT_HASH": self.commit_hash,
            "SR_TRIGGERED_COMMANDER": self.commander,
            "SR_REPOSITORY_URL": repository_url,
            "SR_SUMMARY": self.summary,
            "SR_IS_ROLLBACK": "true" if self.is_rollback else "false",
            "SR_CONTEXT_RAW": json.dumps(raw, separators=(",", ":")),
        }
        env |= {f"SR_LABELS_{key.upper()}": value for key, value in self.labels.items()}
        return env


def script_env(
    context: ScriptContext,
    home: Path,
    env: Mapping[str, str],
    secret_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of a script: never anything of the executor's own."""
    base = {"PATH": SAFE_PATH, "HOME": str(home), "TMPDIR": str(home), "LANG": "C.UTF-8"}
    return base | context.env() | dict(env) | dict(secret_env or {})


class OutputRecorder:
    """Pure: turns a script's output bytes into the lines a stage records, within limits.

    `feed` takes any chunk of bytes and returns the complete lines to record; `close`
    returns the last partial line and, if anything was left out, the summary line.
    """

    def __init__(self, limits: ScriptPolicy) -> None:
        self.limits = limits
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        """The last lines the script printed (recorded or not), for a failure's reason."""
        self._line = bytearray()
        self._line_overflow = 0
        self._lines = 0
        self._bytes = 0
        self._dropped_lines = 0
        self._dropped_bytes = 0
        self._pending = False

    def feed(self, chunk: bytes) -> list[str]:
        """The whole lines of `chunk` that may be recorded (capped; the rest counted as dropped)."""
        out: list[str] = []
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            self._add(piece)
            if end < 0:
                break
            line = self._end_line()
            if line is not None:
                out.append(line)
            start = end + 1
        return out

    def close(self) -> list[str]:
        """The unfinished last line and the note of what was dropped, at the script's end."""
        out: list[str] = []
        if self._pending:
            line = self._end_line()
            if line is not None:
                out.append(line)
        if self._dropped_lines:
            lines = f"{self._dropped_lines} line" + ("s" if self._dropped_lines != 1 else "")
            out.append(
                f"… {self._dropped_bytes} more bytes ({lines}) of output not recorded: "
                f"a stage keeps {self.limits.max_lines} lines / {self.limits.max_bytes} bytes"
            )
        return out

    def _add(self, piece: bytes) -> None:
        self._pending = True
        room = self.limits.max_line_bytes - len(self._line)
        self._line += piece[: max(room, 0)]
        self._line_overflow += max(len(piece) - max(room, 0), 0)

    def _end_line(self) -> str | None:
        raw = bytes(self._line).rstrip(b"\r")
        size = len(self._line) + self._line_overflow
        text = raw.decode("utf-8", errors="replace")
        if self._line_overflow:
            text += f" … {self._line_overflow} more bytes"
        self._line.clear()
        self._line_overflow = 0
        self._pending = False
        self.tail.append(text[:_TAIL_CHARS])
        kept = min(size, self.limits.max_line_bytes) + 1
        if self._lines >= self.limits.max_lines or self._bytes + kept > self.limits.max_bytes:
            self._dropped_lines += 1
            self._dropped_bytes += size + 1
            return None
        self._lines += 1
        self._bytes += kept
        return text


@dataclass(frozen=True)
class ScriptOutcome:
    """How a script ended: its exit code and its output's last lines."""

    exit_code: int | None
    """None when it was killed at the timeout."""
    tail: tuple[str, ...]


class ScriptUserError(SlipwayError, RuntimeError):
    """The account scripts should run as cannot be used (missing, or root itself)."""


def script_account(name: str) -> pwd.struct_passwd | None:
    """The account a script runs as: None (the executor's own) unless the executor is root,
    then `name`, which must exist and must not be root (`ScriptUserError` otherwise)."""
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise ScriptUserError(
            f"the executor runs as root and scripts would run as {name!r}, which does not "
            "exist: set SLIPWAY_EXECUTOR_SCRIPT_USER to an unprivileged account"
        ) from None
    if account.pw_uid == 0:
        raise ScriptUserError(
            f"scripts may not run as root ({name!r}): set SLIPWAY_EXECUTOR_SCRIPT_USER "
            "to an unprivileged account"
        )
    return account


async def run_script(
    script: str,
    *,
    tree: Path,
    cwd: Path,
    env: Callable[[Path], Mapping[str, str]],
    timeout_s: float,
    limits: ScriptPolicy,
    record: Callable[[str], Awaitable[None]],
) -> ScriptOutcome:
    """Run `script` by `/bin/sh -c` in `cwd` (inside the checkout `tree`) with `env(home)`
    only; `record` each kept line.

    When the executor is root the script runs as `limits.run_as`, in a copy of `tree`
    that account owns. Cancelling the caller kills the script's process group and re-raises.
    """
    account = script_account(limits.run_as)
    forbid_inspection()  # also as root: a script that escaped its account still meets it
    with tempfile.TemporaryDirectory(prefix="slipway-script-") as room:
        home = Path(room) / "home"
        home.mkdir()
        if account is not None:
            private = Path(room) / "checkout"
            await asyncio.to_thread(shutil.copytree, tree, private, symlinks=True)
            cwd = private / cwd.relative_to(tree)
            await asyncio.to_thread(_hand_over, Path(room), account)
        return await _run(script, cwd, dict(env(home)), account, timeout_s, limits, record)


def _hand_over(root: Path, account: pwd.struct_passwd) -> None:
    """Give `root` and everything in it to `account` (symlinks themselves, not their targets)."""
    os.chown(root, account.pw_uid, account.pw_gid)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            os.chown(Path(folder) / name, account.pw_uid, account.pw_gid, follow_symlinks=False)


async def _run(
    script: str,
    cwd: Path,
    env: dict[str, str],
    account: pwd.struct_passwd | None,
    timeout_s: float,
    limits: ScriptPolicy,
    record: Callable[[str], Awaitable[None]],
) -> ScriptOutcome:
    recorder = OutputRecorder(limits)
    # The reaper runs as the executor (a script cannot signal or stop it when that is
    # root) and starts the script as `account`, without supplementary groups.
    as_account = ("--as", f"{account.pw_uid}:{account.pw_gid}") if account is not None else ()
    process = await asyncio.create_subprocess_exec(
        *_REAPED,
        *as_account,
        "/bin/sh",
        "-c",
        script,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    # Reading and recording the output is a task of its own: `record` writes to the
    # database, and a cancellation (the lease's watchdog) must kill the script at once,
    # not once a database call that hangs gives up.
    pump = asyncio.create_task(_pump(process, recorder, record), name="script output")
    code: int | None = None
    try:
        async with asyncio.timeout(limits.timeout_of(timeout_s)):
            code = await asyncio.shield(pump)
    except TimeoutError:
        pass
    finally:
        # Always: at the timeout, on cancellation, and after a normal exit (whatever it
        # left running in the background goes with it). First, before any other await:
        # the reaper kills everything below it at once.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(process.pid, signal.SIGTERM)
        if not pump.done():
            pump.cancel()
        await _kill_group(process)
        await asyncio.gather(pump, return_exceptions=True)
    for line in recorder.close():
        await record(line)
    return ScriptOutcome(exit_code=code, tail=tuple(recorder.tail))


async def _pump(
    process: asyncio.subprocess.Process,
    recorder: OutputRecorder,
    record: Callable[[str], Awaitable[None]],
) -> int:
    """Record the script's output until it ends; its exit code."""
    assert process.stdout is not None
    while chunk := await process.stdout.read(_CHUNK):
        for line in recorder.feed(chunk):
            await record(line)
    return await process.wait()


@functools.cache
def forbid_inspection() -> bool:
    """Make this process non-dumpable (once): scripts of the same user cannot read its
    `/proc/<pid>/environ` or memory, nor ptrace it. Whether it could (Linux only)."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """Wait for the reaper to have killed everything below it (it was told to stop), then
    kill its process group whole: whatever is left there if the reaper itself was killed,
    or stopped, by the script."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_REAPER_GRACE_S):
            await process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await process.wait()
