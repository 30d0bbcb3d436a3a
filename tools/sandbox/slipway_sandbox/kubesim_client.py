"""kubesim over HTTP, as the story, the sandbox and chaos drive it: its image rules (the
admin API) and the live Deployments.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class Kubesim:
    """kubesim over HTTP: its image rules (admin API) and the live Deployments."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.rules: list[dict[str, Any]] = []

    def add_image_rule(self, pattern: str, error_rate: float) -> None:
        """Add a rule giving images matching `pattern` that error rate (a bad build)."""
        self.rules.append({"image": pattern, "error_rate": error_rate})
        self._call("PUT", "/kubesim/images", {"images": self.rules})

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The live Deployment, or None when it does not exist."""
        return self._call("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any] | None:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - kubesim on loopback
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - as above
                answer: dict[str, Any] = json.loads(reply.read())
                return answer
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
