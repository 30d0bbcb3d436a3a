#!/usr/bin/env python3
"""The container health check: exit 0 only if the service's `/readyz` answers 200.

Docker's HEALTHCHECK (and compose's) runs this inside the container. The slim
image has neither curl nor wget, and a probe must not need the project's own
imports (a broken install should fail the check, not the checker), so it is
stdlib only. The URL is `http://127.0.0.1:$SLIPWAY_HEALTH_PORT/readyz`; an
argument replaces it (compose checks kubesim's `/version` the same way).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def target(argv: list[str], environ: dict[str, str]) -> str:
    """The URL to check, or raise ValueError naming the setting at fault."""
    if argv:
        return argv[0]
    raw = environ.get("SLIPWAY_HEALTH_PORT", "")
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"SLIPWAY_HEALTH_PORT={raw!r}: expected a port number") from None
    if port <= 0:
        # 0 binds a random port and -1 disables the server: nothing to probe.
        raise ValueError(f"SLIPWAY_HEALTH_PORT={port}: set a fixed port (1-65535) to check")
    return f"http://127.0.0.1:{port}/readyz"


def main(argv: list[str]) -> int:
    """Probe the service's /readyz; 0 when ready (Docker's HEALTHCHECK reads the exit status)."""
    try:
        url = target(argv, dict(os.environ))
    except ValueError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:  # noqa: S310 - loopback or given URL
            status = int(reply.status)
    except urllib.error.HTTPError as exc:
        # 503 carries the failing checks in its body: show them in `docker inspect`.
        body = exc.read(2000).decode("utf-8", "replace")
        print(f"healthcheck: {url} answered {exc.code}: {body}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
