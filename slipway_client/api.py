"""A small, synchronous client of the Slipway HTTP API, for the CLI and scripts: one method
per route, grouped as the API's route modules are.

The exchange itself — URL, key, caps on what is read, and failures mapped into
the error tree (`ApiError`, `ApiUnreachable`) — is `slipway_client.transport`.
Answers are returned as decoded JSON objects; the API's OpenAPI document
(`/api/v1/openapi.json`) describes them. Waiting for a deployment or a cascade
delete by polling is `slipway_cli.waiting`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Final

from slipway_client.transport import JsonObject, Transport

__all__ = ["ApiClient"]

_PAGE: Final = 500


class ApiClient(Transport):
    """Calls the API at `base_url` (scheme, host and port; the `/api/v1` prefix is added)."""

    # --- applications ---------------------------------------------------------------------

    def register_application(
        self,
        *,
        name: str,
        repository_id: str,
        path: str,
        config_filename: str | None = None,
        platform_provider: str | None = None,
        labels: Mapping[str, str] | None = None,
        verify: bool = True,
    ) -> JsonObject:
        """Register an application; `verify=False` skips the check of its config at the head."""
        body: JsonObject = {"name": name, "repository_id": repository_id, "path": path}
        if config_filename is not None:
            body["config_filename"] = config_filename
        if platform_provider is not None:
            body["platform_provider"] = platform_provider
        if labels:
            body["labels"] = dict(labels)
        if not verify:
            body["verify"] = False
        return self.request("POST", "/applications", body=body)

    def list_applications(
        self,
        *,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        disabled: bool | None = None,
        sync_states: Sequence[str] = (),
    ) -> list[JsonObject]:
        """Every matching application, ordered by name (following the pages)."""
        query: list[tuple[str, str]] = [("limit", str(_PAGE))]
        if name is not None:
            query.append(("name", name))
        query.extend(("label", f"{key}={value}") for key, value in (labels or {}).items())
        if disabled is not None:
            query.append(("disabled", "true" if disabled else "false"))
        query.extend(("sync_state", state) for state in sync_states)
        items: list[JsonObject] = []
        cursor: str | None = None
        while True:
            page = self.request(
                "GET", "/applications", query=[*query, *([("cursor", cursor)] if cursor else [])]
            )
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def get_application(self, ref: str) -> JsonObject:
        """The application whose id or name is `ref`."""
        return self.request("GET", f"/applications/{_segment(ref)}")

    def get_live_resources(self, ref: str) -> JsonObject:
        """The application's live objects with their health, as drift last recorded them."""
        return self.request("GET", f"/applications/{_segment(ref)}/live")

    def disable_application(self, ref: str) -> JsonObject:
        """Stop deploying the application until `enable_application`."""
        return self.request("POST", f"/applications/{_segment(ref)}/disable")

    def enable_application(self, ref: str) -> JsonObject:
        """Deploy the application again after `disable_application`."""
        return self.request("POST", f"/applications/{_segment(ref)}/enable")

    def delete_application(self, ref: str, *, cascade: bool = False) -> JsonObject:
        """Delete the application; with `cascade`, its live resources go too (asynchronously)."""
        return self.request(
            "DELETE",
            f"/applications/{_segment(ref)}",
            query=[("cascade", "true" if cascade else "false")],
        )

    def sync_application(self, ref: str, *, strategy: str = "auto") -> JsonObject:
        """Ask for a deployment of the branch head; the answer carries the `request_id`."""
        return self.request(
            "POST", f"/applications/{_segment(ref)}/sync", body={"strategy": strategy}
        )

    def adopt_application(
        self,
        ref: str,
        *,
        running_commit_hash: str,
        resources: Sequence[str],
        pipecd_application_id: str = "",
    ) -> JsonObject:
        """Record that the application took over these objects, `running_commit_hash` running."""
        body = {
            "running_commit_hash": running_commit_hash,
            "resources": list(resources),
            "pipecd_application_id": pipecd_application_id,
        }
        return self.request("POST", f"/applications/{_segment(ref)}/adoption", body=body)

    def list_unregistered_applications(
        self, *, repository_id: str | None = None
    ) -> list[JsonObject]:
        """Every config file in a watched repository that no application is registered at,
        in the order they were found (following the pages)."""
        query: list[tuple[str, str]] = [("limit", str(_PAGE))]
        if repository_id is not None:
            query.append(("repository_id", repository_id))
        items: list[JsonObject] = []
        cursor: str | None = None
        while True:
            page = self.request(
                "GET",
                "/unregistered-applications",
                query=[*query, *([("cursor", cursor)] if cursor else [])],
            )
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def register_unregistered_application(
        self,
        config: str,
        *,
        name: str | None = None,
        platform_provider: str | None = None,
        labels: Mapping[str, str] | None = None,
        verify: bool = True,
    ) -> JsonObject:
        """Register the unregistered application whose id is `config` (named as its config
        names it unless `name` is given)."""
        body: JsonObject = {}
        if name is not None:
            body["name"] = name
        if platform_provider is not None:
            body["platform_provider"] = platform_provider
        if labels:
            body["labels"] = dict(labels)
        if not verify:
            body["verify"] = False
        return self.request(
            "POST", f"/unregistered-applications/{_segment(config)}/register", body=body
        )

    # --- deployments ----------------------------------------------------------------------

    def list_deployments(
        self,
        *,
        application: str | None = None,
        statuses: Sequence[str] = (),
        limit: int = 50,
    ) -> list[JsonObject]:
        """The newest `limit` deployments, optionally of one application and some statuses."""
        query: list[tuple[str, str]] = [("limit", str(min(limit, 500)))]
        if application is not None:
            query.append(("application", application))
        query.extend(("status", status) for status in statuses)
        items: list[JsonObject] = []
        cursor: str | None = None
        while len(items) < limit:
            page = self.request(
                "GET", "/deployments", query=[*query, *([("cursor", cursor)] if cursor else [])]
            )
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items[:limit]

    def get_deployment(self, deployment_id: str) -> JsonObject:
        """The deployment with its stages."""
        return self.request("GET", f"/deployments/{_segment(deployment_id)}")

    def deployment_logs(
        self, deployment_id: str, *, stage_id: str | None = None
    ) -> list[JsonObject]:
        """A deployment's stage log lines, of one stage or all."""
        query = [("stage_id", stage_id)] if stage_id else []
        return list(
            self.request("GET", f"/deployments/{_segment(deployment_id)}/logs", query=query)[
                "items"
            ]
        )

    def follow_logs(
        self, deployment_id: str, *, stage_id: str | None = None
    ) -> Iterator[tuple[str, JsonObject]]:
        """`("log", line)` for each line, stored then live, then `("end", {status})`."""
        query = [("follow", "true"), *([("stage_id", stage_id)] if stage_id else [])]
        yield from self.server_sent_events(
            f"/deployments/{_segment(deployment_id)}/logs", query=query
        )

    def cancel_deployment(self, deployment_id: str, *, rollback: bool = True) -> JsonObject:
        """Cancel a deployment; with `rollback`, roll back to the commit that ran before."""
        return self.request(
            "POST", f"/deployments/{_segment(deployment_id)}/cancel", body={"rollback": rollback}
        )

    def approve_stage(self, deployment_id: str, stage_id: str) -> JsonObject:
        """Approve a WAIT_APPROVAL stage."""
        return self.request(
            "POST", f"/deployments/{_segment(deployment_id)}/stages/{_segment(stage_id)}/approve"
        )

    def skip_stage(self, deployment_id: str, stage_id: str) -> JsonObject:
        """Skip a stage of a kind the API allows skipping."""
        return self.request(
            "POST", f"/deployments/{_segment(deployment_id)}/stages/{_segment(stage_id)}/skip"
        )

    def rejudge(self, deployment_id: str, *, judge: str | None = None) -> JsonObject:
        """The deployment's analyses with their tick verdicts recomputed (by `judge`)."""
        query = [("judge", judge)] if judge else []
        return self.request("GET", f"/deployments/{_segment(deployment_id)}/rejudge", query=query)

    # --- deployment chains ------------------------------------------------------------------

    def list_chains(self, *, limit: int = 20) -> list[JsonObject]:
        """The newest chains, each with its blocks."""
        items: list[JsonObject] = self.request(
            "GET", "/chains", query=[("limit", str(min(limit, 100)))]
        )["items"]
        return items

    def get_chain(self, chain_id: str) -> JsonObject:
        """One chain with its blocks and their deployments."""
        return self.request("GET", f"/chains/{_segment(chain_id)}")

    def cancel_chain(self, chain_id: str) -> JsonObject:
        """Cancel a chain: later blocks never start, running deployments are cancelled."""
        return self.request("POST", f"/chains/{_segment(chain_id)}/cancel")

    # --- insights ---------------------------------------------------------------------------

    def insights(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        period: str = "day",
        application: str | None = None,
        labels: Sequence[str] = (),
    ) -> JsonObject:
        """The four DORA metrics over a range (`GET /insights`; docs/insights.md)."""
        query: list[tuple[str, str]] = [("period", period)]
        for name, value in (("since", since), ("until", until), ("application", application)):
            if value is not None:
                query.append((name, value))
        query.extend(("label", label) for label in labels)
        return self.request("GET", "/insights", query=query)

    # --- the event log ----------------------------------------------------------------------

    def list_events(
        self,
        *,
        after: str | None = None,
        from_position: int | None = None,
        to_position: int | None = None,
        category: str | None = None,
        limit: int = 100,
    ) -> JsonObject:
        """A page of the event log after a cursor, within positions, of one category."""
        query: list[tuple[str, str]] = [("limit", str(limit))]
        if after is not None:
            query.append(("after", after))
        if from_position is not None:
            query.append(("from_position", str(from_position)))
        if to_position is not None:
            query.append(("to_position", str(to_position)))
        if category is not None:
            query.append(("category", category))
        return self.request("GET", "/events", query=query)

    def stream_events(self, stream_id: str) -> list[JsonObject]:
        """Every event of the stream, page after page."""
        items: list[JsonObject] = []
        query: list[tuple[str, str]] = [("limit", "1000")]
        while True:
            page = self.request("GET", f"/events/streams/{_segment(stream_id)}", query=query)
            items.extend(page["items"])
            if not page.get("next_cursor"):
                return items
            query = [("limit", "1000"), ("after", str(page["next_cursor"]))]

    def stream_state(
        self, stream_id: str, *, position: int | None = None, at: str | None = None
    ) -> JsonObject:
        """A stream's folded state, now or as of a position or time."""
        query: list[tuple[str, str]] = []
        if position is not None:
            query.append(("position", str(position)))
        if at is not None:
            query.append(("at", at))
        return self.request("GET", f"/events/streams/{_segment(stream_id)}/state", query=query)

    # --- plan preview -----------------------------------------------------------------------

    def plan_preview(
        self,
        *,
        repository_id: str,
        base_branch: str | None = None,
        head_branch: str | None = None,
        head_commit: str | None = None,
    ) -> JsonObject:
        """What merging the head into the base would deploy, planned by the API from its clone.

        Give one of `head_branch` and `head_commit`; the base defaults to the branch
        the server's control config watches for that repository.
        """
        body: JsonObject = {"repository_id": repository_id}
        for name, value in (
            ("base_branch", base_branch),
            ("head_branch", head_branch),
            ("head_commit", head_commit),
        ):
            if value is not None:
                body[name] = value
        return self.request("POST", "/plan-preview", body=body)

    # --- API keys ---------------------------------------------------------------------------

    def create_api_key(self, *, role: str, name: str = "") -> JsonObject:
        """Make an API key with `role`; the answer holds the secret, shown only once."""
        return self.request("POST", "/api-keys", body={"role": role, "name": name})

    def list_api_keys(self) -> list[JsonObject]:
        """Every API key's id, name, role and state (never the secrets)."""
        return list(self.request("GET", "/api-keys")["items"])

    def revoke_api_key(self, key_id: str) -> JsonObject:
        """Revoke an API key."""
        return self.request("DELETE", f"/api-keys/{_segment(key_id)}")

    # --- secrets ----------------------------------------------------------------------------

    def encrypt_secret(self, data: str) -> str:
        """`data` encrypted for the server's configured key (PipeCD's format)."""
        return str(self.request("POST", "/secrets:encrypt", body={"data": data})["ciphertext"])

    # --- the event watcher ------------------------------------------------------------------

    def register_event(
        self,
        *,
        name: str,
        data: str,
        labels: Mapping[str, str],
        contexts: Mapping[str, str] | None = None,
        commit_hash: str = "",
    ) -> str:
        """Record an event for the event watcher; its id."""
        body: JsonObject = {"name": name, "data": data, "labels": dict(labels)}
        if contexts:
            body["contexts"] = dict(contexts)
        if commit_hash:
            body["commit_hash"] = commit_hash
        return str(self.request("POST", "/event-watcher/events", body=body)["event_id"])

    def list_watched_events(self, *, name: str = "", limit: int = 100) -> list[JsonObject]:
        """Registered event-watcher events, with what each one changed."""
        query: list[tuple[str, str]] = [("limit", str(limit))]
        if name:
            query.append(("name", name))
        return list(self.request("GET", "/event-watcher/events", query=query)["items"])


def _segment(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")
