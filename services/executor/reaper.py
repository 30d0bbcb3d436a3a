"""The parent of every SCRIPT_RUN: nothing the script starts outlives it, `setsid` or not.

Killing the script's process group misses what left the group: a `setsid` (or
a double fork into a new session) makes a daemon the group kill never reaches.
So the executor runs `python -I reaper.py /bin/sh -c <script>` and this small
process, a *child subreaper* (Linux `prctl(PR_SET_CHILD_SUBREAPER)`), becomes
the parent of every orphan below it, whatever session it moved to. When the
shell exits, or the executor asks it to stop (SIGTERM), it kills all its
descendants — found by walking `/proc`, until none is left — and exits with
the shell's status (a signal as the same signal). No cgroup needed.

It is run by path, as a file, with nothing imported from Slipway (the script's
environment has no PYTHONPATH), as the executor's own account; `--as UID:GID`
starts the script as another one (an executor running as root). What a script
can still do when it runs as the executor's account (a non-root executor): kill
this process before starting its escapee; the executor then kills the process
group as before, and the escapee lives on.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

_PR_SET_CHILD_SUBREAPER = 36


def descendants(pid: int) -> list[int]:
    """Every process below `pid` now (children first), from each process's parent in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat.rpartition(")")[2].split()
        if len(fields) >= 2:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_all() -> None:
    """SIGKILL every descendant and reap them, until none is left (a fork in between is
    caught by the next round)."""
    me = os.getpid()
    while below := descendants(me):
        for pid in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        reap()


def reap() -> None:
    """Collect every exited child (as a subreaper, orphans too) without blocking."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def main(argv: list[str]) -> int:
    """Run the script under this subreaper; its exit status, killing what it leaves behind."""
    account: dict[str, Any] = {}
    if argv[:1] == ["--as"] and len(argv) >= 2:
        uid, _, gid = argv[1].partition(":")
        # No supplementary groups: the executor's (root's) would otherwise stay.
        account = {"user": int(uid), "group": int(gid), "extra_groups": []}
        argv = argv[2:]
    if not argv:
        print("usage: reaper.py [--as UID:GID] COMMAND [ARG...]", file=sys.stderr)
        return 64
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("reaper: cannot become a child subreaper", file=sys.stderr)

    def stop(_signum: int, _frame: object) -> None:
        kill_all()
        os._exit(128 + signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    child = subprocess.Popen(argv, **account)
    code = child.wait()
    kill_all()
    if code < 0:  # killed by a signal: say so the same way
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
