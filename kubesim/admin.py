"""The emulator's own endpoints, under `/kubesim/` beside the Kubernetes API.

- `GET /kubesim/targets`: every pod's metrics endpoint in Prometheus HTTP
  service-discovery format (`http_sd_configs: [{url: …/kubesim/targets}]`).
- `GET /kubesim/images`, `PUT /kubesim/images`: read or replace the image
  rules (JSON or YAML: `{ready_delay_s: 1, images: [{image: "*:bad", error_rate: 0.5}]}`).
- `GET /kubesim/forbidden`, `PUT /kubesim/forbidden`: read or replace the
  forbidden rules (`[{namespace: prod, verbs: [delete], resources: ["*"]}]`).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from kubesim.access import ForbiddenRule
from kubesim.metrics import MetricsHub
from kubesim.rules import ImageRules, parse_rules


class AdminApi:
    """kubesim's own `/kubesim/` routes: image rules, forbidden rules, metrics targets."""

    def __init__(
        self, rules: ImageRules, metrics: MetricsHub, forbidden: list[ForbiddenRule]
    ) -> None:
        self.rules = rules
        self.metrics = metrics
        self.forbidden = forbidden  # shared with the REST API, replaced in place

    def add_routes(self, app: web.Application) -> None:
        """Register the `/kubesim/…` routes on `app`."""
        app.router.add_get("/kubesim/targets", self._targets)
        app.router.add_get("/kubesim/images", self._get_images)
        app.router.add_put("/kubesim/images", self._put_images)
        app.router.add_get("/kubesim/forbidden", self._get_forbidden)
        app.router.add_put("/kubesim/forbidden", self._put_forbidden)

    async def _targets(self, _request: web.Request) -> web.Response:
        return web.json_response(self.metrics.targets())

    async def _get_images(self, _request: web.Request) -> web.Response:
        return web.json_response(self.rules.to_json())

    async def _put_images(self, request: web.Request) -> web.Response:
        try:
            delay, rules = parse_rules(await _document(request))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        self.rules.replace(rules)
        if delay is not None:
            self.rules.ready_delay_s = delay
        return web.json_response(self.rules.to_json())

    async def _get_forbidden(self, _request: web.Request) -> web.Response:
        return web.json_response([r.to_json() for r in self.forbidden])

    async def _put_forbidden(self, request: web.Request) -> web.Response:
        data = await _document(request)
        try:
            if not isinstance(data, list):
                raise ValueError("expected a list of forbidden rules")
            rules = [ForbiddenRule.from_mapping(item) for item in data]
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        self.forbidden[:] = rules
        return web.json_response([r.to_json() for r in self.forbidden])


async def _document(request: web.Request) -> Any:
    raw = await request.read()
    try:
        if "yaml" in request.content_type:
            return yaml.safe_load(raw)
        return json.loads(raw or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise web.HTTPBadRequest(text=f"invalid document: {exc}") from exc
