"""Slack's Web API (`chat.postMessage`), pure: the request body and what the answer says.

A receiver with `oauthToken` + `channelID` posts the same Block Kit message
as a hook receiver (`slack.py`), with the channel, and `thread_ts` for every
message of a deployment after its first, so one deployment is one thread.
The request carries the bot token as `Authorization: Bearer`.

Slack answers HTTP 200 to most failures, with `{"ok": false, "error": …}`:
a delivery is only a 2xx *and* `ok: true`. Of those errors, the ones that
mean "later" are retried (`RETRYABLE_ERRORS`); the others (`invalid_auth`,
`channel_not_found`, `not_in_channel`, `invalid_blocks`…) will not change by
sending again and fail at once. A rate limit is HTTP 429 with `Retry-After`,
which the back-off honours like any receiver's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

__all__ = ["RETRYABLE_ERRORS", "SlackAnswer", "post_message_body", "read_answer"]

RETRYABLE_ERRORS: Final = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
"""Slack's `error` values that a later attempt may not meet (its documented transient ones)."""


def post_message_body(payload: str, *, channel: str, thread_ts: str | None) -> bytes:
    """The JSON body of `chat.postMessage`: the stored message (`text`, `blocks`) with where."""
    message = json.loads(payload)
    message["channel"] = channel
    if thread_ts:
        message["thread_ts"] = thread_ts
    return json.dumps(message, ensure_ascii=False).encode()


@dataclass(frozen=True)
class SlackAnswer:
    """What a 2xx answer of chat.postMessage said."""

    ok: bool
    error: str = ""
    ts: str = ""
    """The posted message's id: a thread's later messages are posted under it."""

    @property
    def retryable(self) -> bool:
        """Whether Slack's error is one worth retrying (rate limits, its own faults)."""
        return self.error in RETRYABLE_ERRORS


def read_answer(raw: bytes) -> SlackAnswer:
    """The answer's `ok`, `error` and `ts`; anything not Slack's shape is an error, not a
    delivery (a proxy's page must not count as a posted message)."""
    try:
        answer = json.loads(raw)
    except ValueError:
        return SlackAnswer(ok=False, error="the answer is not JSON")
    if not isinstance(answer, dict):
        return SlackAnswer(ok=False, error="the answer is not a JSON object")
    if answer.get("ok") is not True:
        error = answer.get("error")
        return SlackAnswer(ok=False, error=str(error) if error else "the answer has no ok: true")
    ts = answer.get("ts")
    return SlackAnswer(ok=True, ts=ts if isinstance(ts, str) else "")
