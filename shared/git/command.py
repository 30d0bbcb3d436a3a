"""Running `git` as an asyncio subprocess that can never hang on a prompt.

Every command is `asyncio.create_subprocess_exec` (never a shell) with an
environment that cannot hang on a prompt: `GIT_TERMINAL_PROMPT=0`, no askpass
programs, no credential helpers, `ssh -o BatchMode=yes`, and no inherited
`GIT_*` variables (a service started from a git hook would otherwise act on
the hook's repository). A failure or a timeout is a `GitError` whose kind is
read from git's stderr (`shared.git.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from opentelemetry import trace

from shared.git.errors import GitError, classify_stderr
from shared.redaction import redact as redact_secrets

DEFAULT_TIMEOUT_S: Final = 30.0
DEFAULT_FETCH_TIMEOUT_S: Final = 300.0
_STDERR_TAIL_LINES: Final = 6
_STDERR_TAIL_CHARS: Final = 1000
_KILL_WAIT_S: Final = 5.0

_tracer = trace.get_tracer("slipway.git")

# Environment variables git and ssh read from their parent that must not leak
# into a service's git: anything GIT_* (except how to run ssh, which is how a
# deployment supplies its keys), and the askpass programs that would pop up a
# prompt on a desktop.
_KEEP_GIT_VARS: Final = frozenset({"GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT"})
_DROP_VARS: Final = frozenset({"SSH_ASKPASS", "DISPLAY"})

# Options given to every command: credentials come only from the remote URL or
# from ssh keys, never from a helper that might ask someone.
_CONFIG_ARGS: Final = (
    "-c",
    "credential.helper=",
    "-c",
    "core.askPass=",
    "-c",
    "gc.autoDetach=false",
)


def redact(text: str) -> str:
    """`text` with credentials masked: those in any URL, and every registered secret."""
    return redact_secrets(text)


def git_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a non-interactive git: `base` (default os.environ) made safe."""
    source = os.environ if base is None else base
    env = {
        key: value
        for key, value in source.items()
        if key not in _DROP_VARS and (not key.startswith("GIT_") or key in _KEEP_GIT_VARS)
    }
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GCM_INTERACTIVE="never",
        SSH_ASKPASS_REQUIRE="never",
        # Stable, English stderr: it is parsed to classify failures.
        LC_ALL="C",
        LANGUAGE="C",
    )
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


async def run_git(
    *args: str,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> bytes:
    """Run `git <args>` and return its stdout; a `GitError` on failure or timeout.

    `env` entries are added to the safe environment of `git_env()`.
    """
    argv = ["git", *_CONFIG_ARGS]
    if git_dir is not None:
        argv.append(f"--git-dir={git_dir}")
    argv.extend(args)
    shown = tuple(redact(a) for a in ("git", *args))
    verb = next((a for a in args if not a.startswith("-")), "git")
    with _tracer.start_as_current_span(f"git {verb}", kind=trace.SpanKind.CLIENT) as span:
        span.set_attribute("git.command", " ".join(shown))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=git_env() | dict(env or {}),
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Its own process group, so a timeout also kills the helpers git
                # started (ssh, git-remote-https) instead of orphaning them.
                start_new_session=True,
            )
        except OSError as exc:
            raise GitError(
                f"cannot run git: {exc}", kind="other", command=shown, stderr_tail=str(exc)
            ) from exc
        try:
            async with asyncio.timeout(timeout_s):
                out, err = await process.communicate(stdin)
        except TimeoutError as exc:
            await _kill(process)
            span.set_status(trace.StatusCode.ERROR, "timeout")
            raise GitError(
                f"{' '.join(shown)}: no answer within {timeout_s:g} s",
                kind="unreachable",
                command=shown,
                stderr_tail=f"timed out after {timeout_s:g} s",
            ) from exc
        except BaseException:
            await _kill(process)
            raise
        if process.returncode != 0:
            tail = _tail(redact(err.decode(errors="replace")))
            kind = classify_stderr(tail)
            span.set_status(trace.StatusCode.ERROR, kind)
            raise GitError(
                f"{' '.join(shown)} failed ({kind}): {tail or f'exit {process.returncode}'}",
                kind=kind,
                command=shown,
                stderr_tail=tail,
                returncode=process.returncode,
            )
        return out


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), _KILL_WAIT_S)


def _tail(stderr: str) -> str:
    lines = [line.rstrip() for line in stderr.strip().splitlines() if line.strip()]
    return "\n".join(lines[-_STDERR_TAIL_LINES:])[-_STDERR_TAIL_CHARS:]
