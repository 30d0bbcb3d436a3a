"""A Helm chart from another git repository (`input.helmChart.gitRemote`), checked out for helm.

PipeCD clones the remote, checks out `ref` and renders `path` in it as a local
chart. So does Slipway, with the remote held to what can only fetch a
repository: an `https://`, `http://`, `ssh://` or `git://` URL, or scp-like
`user@host:path` — never a local path, `file://`, or a transport helper
(`ext::sh -c …` would run a program), and git is told so again on its command
line (`protocol.allow`). The clone gets no credentials of ours and no
terminal prompt; the chart's tree must stay inside the clone (`repo_files`).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Final

from shared.config.errors import excerpt
from shared.config.tool_options import plain_value_problem
from shared.config.types import _show
from shared.errors import ConfigError

__all__ = ["checkout_chart_remote", "git_remote_problem"]

GIT_TIMEOUT_SECONDS: Final = 120
_URL: Final = re.compile(r"(?:https?|ssh|git)://[^\s/]+(?:/\S*)?")
_SCP: Final = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s:][^\s]*")
_PROTOCOLS: Final = (
    "-c", "protocol.allow=never",
    "-c", "protocol.https.allow=always",
    "-c", "protocol.http.allow=always",
    "-c", "protocol.ssh.allow=always",
    "-c", "protocol.git.allow=always",
)  # fmt: skip


def git_remote_problem(remote: str) -> str | None:
    """Why `remote` may not be cloned for a chart, or None."""
    if problem := plain_value_problem(remote):
        return problem
    if "::" in remote or not (_URL.fullmatch(remote) or _SCP.fullmatch(remote)):
        return (
            "expected a git remote URL (https://, ssh://, git://, or user@host:path); "
            f"local paths, file:// and transport helpers are not allowed; got {_show(remote)}"
        )
    return None


def checkout_chart_remote(remote: str, ref: str, into: Path, *, what: str) -> Path:
    """Clone `remote` into the empty directory `into` and check out `ref` (default: HEAD)."""
    for field, problem in (
        ("gitRemote", git_remote_problem(remote)),
        ("ref", plain_value_problem(ref) if ref else None),
    ):
        if problem is not None:
            raise ConfigError(f"{what}: input.helmChart.{field}: {problem}")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(into),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }
    steps = [["clone", "--quiet", "--no-checkout", "--", remote, str(into / "chart")]]
    steps.append(
        ["-C", str(into / "chart"), "checkout", "--quiet", "--detach", ref or "HEAD", "--"]
    )
    for step in steps:
        try:
            done = subprocess.run(
                ["git", *_PROTOCOLS, *step],
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
                env=env,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"{what}: cloning the chart's gitRemote took over {GIT_TIMEOUT_SECONDS}s"
            ) from None
        if done.returncode != 0:
            said = done.stderr.strip().splitlines()
            detail = excerpt(said[-1], 200) if said else "no output"
            raise ConfigError(
                f"{what}: input.helmChart.gitRemote {_show(remote)} (ref {ref or 'HEAD'}): {detail}"
            )
    return into / "chart"
