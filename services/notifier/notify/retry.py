"""When to try a failed delivery again, and whether to: exponential back-off with a cap.

Pure: the attempt number, the response and a jitter draw in `[0, 1)` come in,
a decision comes out, so the worker is the only part that sleeps or rolls dice.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ["RetryPolicy", "is_retryable_status"]

# Worth another try: the receiver was slow, busy or broken for now. Any other 4xx
# (a bad URL, a revoked hook, a payload it refuses) will fail the same way again.
_RETRYABLE_4XX: Final = frozenset({408, 409, 425, 429})


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status (not 2xx) may succeed when sent again."""
    return status >= 500 or status in _RETRYABLE_4XX


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """`max_attempts` tries in all; the n-th retry waits `base_s * factor**(n-1)`, at most `cap_s`.

    Jitter spreads the retries of many notifications that failed together (a
    receiver that was down) instead of sending them back all at once: the
    wait is drawn from `[(1 - jitter) * d, d]`.
    """

    max_attempts: int = 8
    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_s < 0 or self.factor < 1 or self.cap_s < 0:
            raise ValueError(f"invalid retry policy {self!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"retry jitter must be within [0, 1], got {self.jitter}")

    def delay_s(self, attempt: int, draw: float = 1.0, retry_after_s: float | None = None) -> float:
        """How long to wait after failed attempt number `attempt` (1-based).

        A receiver's `Retry-After` is honoured when it asks for longer, up to the cap.
        """
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        delay = min(self.cap_s, self.base_s * self.factor ** (attempt - 1))
        delay *= 1 - self.jitter * (1 - draw)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.cap_s))
        return delay

    def gives_up_after(self, attempt: int) -> bool:
        """Whether attempt number `attempt` was the last one allowed."""
        return attempt >= self.max_attempts
